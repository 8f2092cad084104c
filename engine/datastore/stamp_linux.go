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
		MtimeNs: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		CtimeNs: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
		Ino:     st.Ino,
		Dev:     st.Dev,
	}, true
}
