package datastore

import (
	"io/fs"
	"syscall"
)

func statStamp(fi fs.FileInfo) (Stamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Stamp{}, false
	}
	return Stamp{
		Size:    fi.Size(),
		MtimeNs: st.Mtimespec.Sec*1e9 + st.Mtimespec.Nsec,
		CtimeNs: st.Ctimespec.Sec*1e9 + st.Ctimespec.Nsec,
		Ino:     st.Ino,
		Dev:     uint64(st.Dev),
	}, true
}
