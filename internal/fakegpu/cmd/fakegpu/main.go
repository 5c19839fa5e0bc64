// Command fakegpu is internal/fakegpu's command for shell scripts such as
// scripts/slurm-test.sh: build the fake driver libraries, create the fake
// node the jobs' keepgpu holds, and show which process holds what.
package main

import (
	"os"

	"github.com/keepgpu/keepgpu/internal/fakegpu"
)

func main() { os.Exit(fakegpu.Main(os.Args[1:], os.Stdout, os.Stderr)) }
