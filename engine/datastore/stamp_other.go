//go:build !linux && !darwin

package datastore

import "io/fs"

// statStamp: no ctime or inode known here, so no stamps (readers by path
// cannot check; reads through Open still hash).
func statStamp(fi fs.FileInfo) (Stamp, bool) { return Stamp{}, false }
