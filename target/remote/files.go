package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	"github.com/rseqdbg/rseqdbg/target"
)

// Object files are read where the process runs: through the stub's vFile
// when it has it, or from the local file of the same path when that one is
// the same file (same size, same first and last pages), which spares the
// round trips. A stub without vFile (qemu-user before 8.1) runs programs
// of the local file system.

const fileBlock = 16 << 10

type fileEntry struct {
	local  bool
	size   int64
	blocks map[int64][]byte
}

type fileCache struct {
	t       *Target
	entries map[string]*fileEntry
}

func (c *fileCache) reset() { c.entries = map[string]*fileEntry{} }

// localFile is an *os.File with the size the core asks for.
type localFile struct {
	*os.File
	size int64
}

func (f localFile) Size() int64 { return f.size }

func openLocal(path string) (target.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return localFile{f, st.Size()}, nil
}

// remoteFile reads a file through vFile, a block at a time, keeping the
// blocks for the next reader of the same path.
type remoteFile struct {
	t     *Target
	fd    int
	entry *fileEntry
}

func (f *remoteFile) Size() int64 { return f.entry.size }

func (f *remoteFile) Close() error {
	if f.fd < 0 {
		return nil
	}
	err := f.t.cl().FileClose(f.fd)
	f.fd = -1
	return f.t.fail(err)
}

func (f *remoteFile) block(i int64) ([]byte, error) {
	if b, ok := f.entry.blocks[i]; ok {
		return b, nil
	}
	if f.fd < 0 {
		return nil, os.ErrClosed
	}
	var b []byte
	for int64(len(b)) < fileBlock {
		part, err := f.t.cl().FilePread(f.fd, fileBlock-len(b), i*fileBlock+int64(len(b)))
		if err != nil {
			return nil, f.t.fail(err)
		}
		if len(part) == 0 {
			break
		}
		b = append(b, part...)
	}
	f.entry.blocks[i] = b
	return b, nil
}

func (f *remoteFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= f.entry.size {
			return n, io.EOF
		}
		b, err := f.block(pos / fileBlock)
		if err != nil {
			return n, err
		}
		in := pos % fileBlock
		if in >= int64(len(b)) {
			return n, io.EOF
		}
		n += copy(p[n:], b[in:])
	}
	return n, nil
}

// openRemote opens path on the stub's side, read-only.
func (t *Target) openRemote(path string) (int, error) {
	if err := t.check(); err != nil {
		return -1, err
	}
	if !t.vfile {
		return -1, fmt.Errorf("%s: %w", path, wire.ErrUnsupported)
	}
	fd, err := t.cl().FileOpen(path, 0, 0)
	if errors.Is(err, wire.ErrUnsupported) {
		t.vfile = false
	}
	return fd, t.fail(err)
}

// OpenFile opens an object file of the process (see the comment at the
// top of this file).
func (t *Target) OpenFile(path string) (target.File, error) {
	c := t.files
	if e, ok := c.entries[path]; ok {
		if e.local {
			return openLocal(path)
		}
		fd, err := t.openRemote(path)
		if err != nil {
			return nil, err
		}
		return &remoteFile{t: t, fd: fd, entry: e}, nil
	}
	fd, err := t.openRemote(path)
	if errors.Is(err, wire.ErrUnsupported) {
		c.entries[path] = &fileEntry{local: true}
		return openLocal(path)
	}
	if err != nil {
		return nil, err
	}
	size, err := t.cl().FileSize(fd)
	if err != nil {
		t.cl().FileClose(fd)
		return nil, t.fail(err)
	}
	e := &fileEntry{size: size, blocks: map[int64][]byte{}}
	rf := &remoteFile{t: t, fd: fd, entry: e}
	if t.sameAsLocal(path, rf) {
		rf.Close()
		e.local, e.blocks = true, nil
		c.entries[path] = e
		return openLocal(path)
	}
	slog.Debug("reading an object file through the upstream", "path", path, "size", size)
	c.entries[path] = e
	return rf, nil
}

// sameAsLocal compares the local file of the same path with the remote
// one: size, first and last block.
func (t *Target) sameAsLocal(path string, rf *remoteFile) bool {
	lf, err := openLocal(path)
	if err != nil {
		return false
	}
	defer lf.Close()
	if lf.Size() != rf.Size() {
		return false
	}
	for _, off := range []int64{0, max(0, (rf.Size()-1)/fileBlock*fileBlock)} {
		remote, err := rf.block(off / fileBlock)
		if err != nil {
			return false
		}
		local := make([]byte, len(remote))
		if n, _ := lf.ReadAt(local, off); n != len(remote) || !bytes.Equal(local, remote) {
			return false
		}
	}
	return true
}
