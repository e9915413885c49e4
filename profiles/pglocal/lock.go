package pglocal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// lockName is the file in a cluster directory whose flock marks the
// directory as owned by a live Cluster. The kernel drops the lock when the
// owning process dies, so a held lock never goes stale.
const lockName = ".pglocal.lock"

// lockDir takes the exclusive lock of dir without waiting. It fails with
// ErrInUse when another Cluster holds it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	for range 10 {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
				f.Close()
				if errors.Is(err, syscall.EWOULDBLOCK) {
					return nil, fmt.Errorf("%s: %w", dir, ErrInUse)
				}
				return nil, fmt.Errorf("locking %s: %w", path, err)
			}
			if sameFile(f, path) {
				return f, nil
			}
			f.Close() // unlinked by a concurrent Remove; try again
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("opening %s: %w", path, err)
		}
		// Create the lock file locked, then publish it with link(2), which
		// fails if someone else published one first.
		tmp, err := os.CreateTemp(dir, lockName+".*")
		if err != nil {
			return nil, fmt.Errorf("creating lock file in %s: %w", dir, err)
		}
		if err := syscall.Flock(int(tmp.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return nil, fmt.Errorf("locking %s: %w", tmp.Name(), err)
		}
		err = os.Link(tmp.Name(), path)
		os.Remove(tmp.Name())
		if err == nil {
			return tmp, nil
		}
		tmp.Close()
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("publishing lock file %s: %w", path, err)
		}
	}
	return nil, fmt.Errorf("locking %s: lock file keeps changing", dir)
}

// sameFile reports whether the open file f is still the file at path.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	if err != nil {
		return false
	}
	return os.SameFile(a, b)
}
