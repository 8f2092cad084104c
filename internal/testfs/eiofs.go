package testfs

import (
	"context"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FailingDisk is a FUSE file system that passes everything through to a
// folder, except that while it is broken every write and fsync of a file
// fails with EIO, as on a failing disk (this machine has no device-mapper
// to make one).
type FailingDisk struct {
	broken atomic.Bool
}

// Break makes writes fail with EIO (true) or pass again (false).
func (d *FailingDisk) Break(broken bool) { d.broken.Store(broken) }

// MountFailingDisk mounts a FailingDisk (working until broken) on a fresh
// folder and returns it; it is unmounted when the test ends, also when it
// fails. It skips the test where FUSE cannot be mounted (not root, no
// /dev/fuse).
func MountFailingDisk(t testing.TB) (string, *FailingDisk) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a FUSE file system that fails writes with EIO needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("skipped: no /dev/fuse here to mount a FUSE file system that fails writes with EIO: %v", err)
	}
	backing, dir := t.TempDir(), t.TempDir()
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		t.Fatal(err)
	}
	d := &FailingDisk{}
	root := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &failingNode{LoopbackNode: fs.LoopbackNode{RootData: r}, disk: d}
	}
	root.RootNode = root.NewNode(root, nil, "", &st)
	srv, err := fs.Mount(dir, root.RootNode, &fs.Options{MountOptions: fuse.MountOptions{
		DirectMount: true, FsName: "failingdisk", Name: "failingdisk",
	}})
	if err != nil {
		t.Skipf("skipped: cannot mount a FUSE file system here: %v", err)
	}
	t.Cleanup(func() {
		d.Break(false)
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount the failing disk %s: %v", dir, err)
		}
	})
	return dir, d
}

// failingNode is a loopback node whose files fail writes while the disk
// is broken.
type failingNode struct {
	fs.LoopbackNode
	disk *FailingDisk
}

func (n *failingNode) wrap(fh fs.FileHandle) fs.FileHandle {
	if lf, ok := fh.(*fs.LoopbackFile); ok {
		return &failingFile{LoopbackFile: lf, disk: n.disk}
	}
	return fh
}

func (n *failingNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	return n.wrap(fh), fl, errno
}

func (n *failingNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return in, n.wrap(fh), fl, errno
}

func (n *failingNode) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle,
	offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	if n.disk.broken.Load() {
		return 0, syscall.EIO
	}
	return n.LoopbackNode.CopyFileRange(ctx, unwrap(fhIn), offIn, out, unwrap(fhOut), offOut, length, flags)
}

func unwrap(fh fs.FileHandle) fs.FileHandle {
	if f, ok := fh.(*failingFile); ok {
		return f.LoopbackFile
	}
	return fh
}

// failingFile is a loopback file whose writes go through this server (no
// kernel passthrough), so that they can fail.
type failingFile struct {
	*fs.LoopbackFile
	disk *FailingDisk
}

func (f *failingFile) PassthroughFd() (int, bool) { return -1, false }

func (f *failingFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if f.disk.broken.Load() {
		return 0, syscall.EIO
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

func (f *failingFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if f.disk.broken.Load() {
		return syscall.EIO
	}
	return f.LoopbackFile.Fsync(ctx, flags)
}
