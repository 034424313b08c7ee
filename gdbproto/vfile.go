package gdbproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
)

// gdb's File-I/O flag and errno values (gdb's "Protocol-specific
// Representation of Datatypes"), which are not the host's.
const (
	fioRDONLY = 0x0
	fioWRONLY = 0x1
	fioRDWR   = 0x2
	fioAPPEND = 0x8
	fioCREAT  = 0x200
	fioTRUNC  = 0x400
	fioEXCL   = 0x800

	fioEUNKNOWN = 9999
)

var fioErrno = map[syscall.Errno]int{
	syscall.EPERM: 1, syscall.ENOENT: 2, syscall.EINTR: 4, syscall.EBADF: 9, syscall.EACCES: 13,
	syscall.EFAULT: 14, syscall.EBUSY: 16, syscall.EEXIST: 17, syscall.ENODEV: 19,
	syscall.ENOTDIR: 20, syscall.EISDIR: 21, syscall.EINVAL: 22, syscall.ENFILE: 23,
	syscall.EMFILE: 24, syscall.EFBIG: 27, syscall.ENOSPC: 28, syscall.ESPIPE: 29,
	syscall.EROFS: 30, syscall.ENAMETOOLONG: 91,
}

func fileError(err error) [][]byte {
	code := fioEUNKNOWN
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		if v, ok := fioErrno[errno]; ok {
			code = v
		}
	case errors.Is(err, fs.ErrNotExist):
		code = 2
	case errors.Is(err, fs.ErrPermission):
		code = 13
	}
	return one(fmt.Sprintf("F-1,%x", code))
}

var errBadFD = syscall.EBADF

// vFile serves gdb's host I/O, so its default "target:" sysroot reads the
// program and its libraries through us. The target shares our file system
// (we run it), so setfs changes nothing.
func (s *session) vFile(req string) [][]byte {
	op, args, _ := strings.Cut(req, ":")
	fsys := s.srv.cfg.FS
	switch op {
	case "setfs":
		return one("F0")
	case "open":
		f := strings.SplitN(args, ",", 3)
		if len(f) != 3 {
			return replyErr
		}
		name, err := wire.DecodeHex(f[0])
		if err != nil {
			return replyErr
		}
		flags, err1 := wire.ParseHexUint64(f[1])
		mode, err2 := wire.ParseHexUint64(f[2])
		if err1 != nil || err2 != nil {
			return replyErr
		}
		file, err := fsys.Open(string(name), hostOpenFlags(flags), os.FileMode(mode&0o777))
		if err != nil {
			return fileError(err)
		}
		if len(s.files) >= 64 {
			file.Close()
			return fileError(syscall.EMFILE)
		}
		fd := s.nextFD
		s.nextFD++
		s.files[fd] = file
		return one(fmt.Sprintf("F%x", fd))
	case "close":
		fd, err := parseHexInt(args, 1<<30)
		if err != nil {
			return replyErr
		}
		f, ok := s.files[fd]
		if !ok {
			return fileError(errBadFD)
		}
		delete(s.files, fd)
		if err := f.Close(); err != nil {
			return fileError(err)
		}
		return one("F0")
	case "pread":
		f := strings.Split(args, ",")
		if len(f) != 3 {
			return replyErr
		}
		fd, err0 := parseHexInt(f[0], 1<<30)
		count, err1 := wire.ParseHexUint64(f[1])
		off, err2 := wire.ParseHexUint64(f[2])
		if err0 != nil || err1 != nil || err2 != nil || off > 1<<62 {
			return replyErr
		}
		file, ok := s.files[fd]
		if !ok {
			return fileError(errBadFD)
		}
		// Half the packet: the framing may escape every byte.
		buf := make([]byte, min(count, packetSize/2-32))
		n, err := file.ReadAt(buf, int64(off))
		if err != nil && !errors.Is(err, io.EOF) {
			return fileError(err)
		}
		out := fmt.Appendf(nil, "F%x;", n)
		return [][]byte{append(out, buf[:n]...)}
	case "pwrite":
		f := strings.SplitN(args, ",", 3)
		if len(f) != 3 {
			return replyErr
		}
		fd, err0 := parseHexInt(f[0], 1<<30)
		off, err1 := wire.ParseHexUint64(f[1])
		if err0 != nil || err1 != nil || off > 1<<62 {
			return replyErr
		}
		file, ok := s.files[fd]
		if !ok {
			return fileError(errBadFD)
		}
		// The data is binary, already unescaped by the framing layer.
		n, err := file.WriteAt([]byte(f[2]), int64(off))
		if err != nil {
			return fileError(err)
		}
		return one(fmt.Sprintf("F%x", n))
	case "fstat":
		fd, err := parseHexInt(args, 1<<30)
		if err != nil {
			return replyErr
		}
		file, ok := s.files[fd]
		if !ok {
			return fileError(errBadFD)
		}
		st, err := file.Stat()
		if err != nil {
			return fileError(err)
		}
		b := fioStat(st)
		return [][]byte{append(fmt.Appendf(nil, "F%x;", len(b)), b...)}
	case "unlink":
		name, err := wire.DecodeHex(args)
		if err != nil {
			return replyErr
		}
		if err := fsys.Unlink(string(name)); err != nil {
			return fileError(err)
		}
		return one("F0")
	case "readlink":
		name, err := wire.DecodeHex(args)
		if err != nil {
			return replyErr
		}
		dest, err := fsys.Readlink(string(name))
		if err != nil {
			return fileError(err)
		}
		return [][]byte{append(fmt.Appendf(nil, "F%x;", len(dest)), dest...)}
	}
	return replyEmpty
}

func hostOpenFlags(f uint64) int {
	var flags int
	switch f & 3 {
	case fioWRONLY:
		flags = os.O_WRONLY
	case fioRDWR:
		flags = os.O_RDWR
	default:
		flags = os.O_RDONLY
	}
	for _, m := range []struct {
		fio  uint64
		host int
	}{{fioAPPEND, os.O_APPEND}, {fioCREAT, os.O_CREATE}, {fioTRUNC, os.O_TRUNC}, {fioEXCL, os.O_EXCL}} {
		if f&m.fio != 0 {
			flags |= m.host
		}
	}
	return flags
}

// fioStat encodes gdb's struct fio_stat: big-endian, 32-bit fields but
// 64-bit size, blksize and blocks.
func fioStat(st os.FileInfo) []byte {
	b := make([]byte, 0, 64)
	u32 := func(v uint64) { b = binary.BigEndian.AppendUint32(b, uint32(v)) }
	u64 := func(v uint64) { b = binary.BigEndian.AppendUint64(b, v) }
	var dev, ino, nlink, uid, gid, rdev, blksize, blocks uint64
	var atime, mtime, ctime int64
	mode := uint64(st.Mode().Perm())
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		dev, ino, nlink, uid, gid, rdev = sys.Dev, sys.Ino, sys.Nlink, uint64(sys.Uid), uint64(sys.Gid), sys.Rdev
		blksize, blocks = uint64(sys.Blksize), uint64(sys.Blocks)
		mode = uint64(sys.Mode)
		atime, mtime, ctime = sys.Atim.Sec, sys.Mtim.Sec, sys.Ctim.Sec
	} else {
		mtime = st.ModTime().Unix()
		atime, ctime = mtime, mtime
		switch {
		case st.IsDir():
			mode |= syscall.S_IFDIR
		case st.Mode().IsRegular():
			mode |= syscall.S_IFREG
		}
	}
	u32(dev)
	u32(ino)
	u32(mode)
	u32(nlink)
	u32(uid)
	u32(gid)
	u32(rdev)
	u64(uint64(st.Size()))
	u64(blksize)
	u64(blocks)
	u32(uint64(atime))
	u32(uint64(mtime))
	u32(uint64(ctime))
	return b
}
