// Package shell is the small interactive shell built into photon-init, for
// the serial console of a machine that has no shell of its own.
//
// It has three parts:
//
//   - Editor, a line editor for a terminal in raw mode that works over a
//     serial line: bytes may come one at a time, Enter may be CR, LF or
//     CR LF, escape sequences are decoded by a state machine that drops
//     what it does not know, and the terminal is never asked anything (no
//     size or cursor query). Other writers of the same terminal go through
//     Editor.Around, which hides the line being typed and draws it again.
//   - Shell, which reads lines with the editor, splits them into words as
//     sh does, and runs built-in commands (ls, cat, ps, kill, mount,
//     umount, ip, dmesg, poweroff, ...) in goroutines whose panics are
//     reported, with Ctrl-C cancelling them; other words run programs.
//   - Programs (and the machine's own /bin/sh, RunOnTerminal) run on a new
//     pseudo-terminal that is relayed to and from the console, in a
//     session of their own: the console's tty is never anyone's
//     controlling terminal, since the kernel hangs a real tty up when such
//     a session's leader exits.
//
// photonctl's verbs are a table of commands (CtlCommands) around a
// CtlFunc: ProgramCtl runs "photon-init ctl VERB" as a program on the
// terminal. Package boot (debugshell.go) decides when a shell runs.
package shell
