package controlplane

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is one running program started by this package: a control-plane
// component, or csrguard itself in end-to-end tests. Its output goes to a
// log file that is appended to across restarts.
type Process struct {
	args []string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}

	mu  sync.Mutex
	err error
}

// StartProcess starts bin with args, appending its output to logPath.
func StartProcess(bin string, args []string, logPath string) (*Process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "\n=== %s %s\n", time.Now().Format(time.RFC3339), bin)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Pdeathsig kills the component if the test binary dies without cleanup,
	// so no orphaned API server holds a port into the next run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &Process{args: args, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		if err == nil {
			// Err says how the process ended even when it exited cleanly,
			// so that "exited: %w" never prints a nil error.
			err = errors.New("exit status 0")
		}
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns how the process ended, once it has (an *exec.ExitError, or
// "exit status 0"), and nil while it runs.
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stop sends SIGTERM, waits up to 15 s, then SIGKILLs, and always waits.
func (p *Process) Stop() error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return nil
}

// Kill ends the process at once with SIGKILL, as a crash or an OOM kill
// would, and waits for it.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Pause stops the process with SIGSTOP, as a stalled VM or a frozen cgroup
// would: it keeps its sockets and its state, and runs on from where it was
// when Resume sends SIGCONT.
func (p *Process) Pause() error { return syscall.Kill(-p.cmd.Process.Pid, syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume() error { return syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT) }

// Pid returns the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }
