package main

import (
	"fmt"
	"os"

	"github.com/photon-init/photon-init/pkg/config"
)

// cmdValidate is "photon-init validate FILE...": it checks machine
// configuration files offline with the same code the boot uses, printing
// "FILE:LINE: message" for every problem. Exit status 1 if any file is bad.
func cmdValidate(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: photon-init validate FILE...")
		return 2
	}
	status := 0
	for _, path := range args {
		if _, err := config.Load(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			status = 1
			continue
		}
		fmt.Printf("%s: ok\n", path)
	}
	return status
}
