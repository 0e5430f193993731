//go:build race

package container

// raceEnabled: the test binary, which is also libcontainer's init, is
// built with the race detector and needs far more memory to start.
const raceEnabled = true
