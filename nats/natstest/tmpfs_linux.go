package natstest

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// runInNamespace runs the test tb again in a user and mount namespace of
// its own, as root there, and returns its output.
func runInNamespace(tb testing.TB) ([]byte, error) {
	cmd := exec.Command(os.Args[0], testArgs(tb)...)
	cmd.Env = append(os.Environ(), tmpfsChild+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	return cmd.CombinedOutput()
}
