//go:build unix && !linux

package maildev

import "syscall"

// sysProcAttr runs MailDev in its own process group. Outside Linux there is
// no parent-death signal: a MailDev whose parent was killed keeps running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
