package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

func mountTmpfs(dir, size string) error {
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		return fmt.Errorf("mount a %s tmpfs on %s (the disk-full injections need root): %w", size, dir, err)
	}
	return nil
}

// unmount unmounts dir, killing what still holds files there; lazily as a
// last resort, so the suite never leaves a mount behind.
func unmount(dir string) {
	for i := 0; i < 20; i++ {
		err := syscall.Unmount(dir, 0)
		if err == nil || err == syscall.EINVAL || err == syscall.ENOENT {
			return
		}
		for _, pid := range procsMatching(dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		fmt.Fprintf(os.Stderr, "fault: could not unmount %s: %v (umount -l %s)\n", dir, err, dir)
	}
}

// fill writes a file into dir until the file system is full.
func fill(dir string) (int64, error) {
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if err != nil {
			return n, nil // ENOSPC: full
		}
	}
}

// diskFull runs the flow on a small tmpfs datastore and fills it at a
// random point: the run must end (nothing stuck running, no orphan task),
// what completed before must read back as it was, and once space is free
// again resume completes with an uninterrupted run's results. It returns
// false if the run ended before the fill (not an injection).
func (c *chain) diskFull() bool {
	cl, err := c.client("run")
	if err != nil {
		c.s.record(diskFull, "start", []string{err.Error()}, false)
		return true
	}
	defer func() {
		if !cl.exited() {
			cl.kill()
			cl.wait(10 * time.Second)
		}
	}()
	d := c.uniform(50*time.Millisecond, time.Duration(0.8*float64(c.s.span(6))))
	if !sleepOrExit(cl, d) {
		if cl.code == 0 {
			c.s.observe(cl.ended.Sub(cl.started), 6)
		}
		c.s.tally.add(diskFull, missed)
		return false
	}
	var problems []string
	if p, err := c.ledger.scan(c.s.want); err != nil {
		problems = append(problems, "lost: "+err.Error())
	} else {
		problems = append(problems, p...)
	}
	at := time.Since(cl.started)
	n, err := fill(c.base)
	if err != nil {
		problems = append(problems, "could not fill the tmpfs: "+err.Error())
	}
	what := fmt.Sprintf("chain %d, %s, tmpfs filled (%d KiB) %s into `run`", c.id, c.mode(), n>>10, at.Round(time.Millisecond))
	if _, ok := cl.wait(90 * time.Second); !ok {
		problems = append(problems, "stuck: the R client did not exit within 90 s of the disk filling up:\n"+indent(cl.tail(5)))
		cl.kill()
		cl.wait(10 * time.Second)
	}
	problems = append(problems, c.noOrphans("the run on a full disk")...)
	problems = append(problems, c.settled("after the disk filled up")...)
	p, err := c.ledger.scan(c.s.want)
	if err != nil {
		problems = append(problems, "lost: "+err.Error())
	}
	cut := false // a task completed with a wrong value after the fill
	for _, x := range p {
		if strings.HasPrefix(x, "wrong value:") {
			x, cut = knownAs("diskfull-task-writes", x), true
		}
		problems = append(problems, x)
	}
	v, _ := c.ledger.verify(c.s.reader, nil, "")
	problems = append(problems, v...)
	if err := os.Remove(filepath.Join(c.base, "filler")); err != nil {
		problems = append(problems, "could not free the tmpfs: "+err.Error())
	}
	for _, x := range c.finish() {
		if cut && strings.HasPrefix(x, "wrong value:") {
			x = knownAs("diskfull-task-writes", x) // the resume cloned that task
		}
		problems = append(problems, x)
	}
	sort.Strings(problems)
	c.s.record(diskFull, what, problems, false)
	return true
}
