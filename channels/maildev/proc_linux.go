package maildev

import "syscall"

// sysProcAttr runs MailDev in its own process group (so Stop reaches node
// and anything it spawns, and a terminal's Ctrl-C reaches only us, who stop
// it in order) and has the kernel send it SIGKILL if we die without Stop.
// Pdeathsig fires when the OS thread that started the child exits; the Go
// runtime does not end threads it runs goroutines on, so in practice this
// is when the process dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
