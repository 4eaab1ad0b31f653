package scan

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
)

// errBudget ends the reads of an archive walk whose byte budget is spent.
var errBudget = errors.New("scan: archive byte budget spent")

// archiveWalk looks inside the archives of one message (zip, tar, gzip,
// bzip2, nested in each other), within one budget of depth, entries and
// bytes decompressed, enforced while reading: a bomb ends in an
// ArchiveLimit finding once the budget is spent, never in reading it all.
type archiveWalk struct {
	a           *AttachmentPolicy
	ctx         context.Context
	part        string
	entriesLeft int
	bytesLeft   int64
	out         *[]Finding
	limitHit    bool // an ArchiveLimit finding was made: one is enough
	done        bool // a budget is spent or the context ended: stop everywhere
	gzFree      []*gzip.Reader
}

func (w *archiveWalk) add(kind FindingKind, name, detail string) {
	f := Finding{Kind: kind, Part: w.part, Name: name, Detail: detail}
	if kind == EncryptedArchive || kind == UnopenableArchive {
		f.Action = w.a.cfg.UnopenableArchives
	}
	*w.out = append(*w.out, f)
}

func (w *archiveWalk) limit(path, detail string) {
	if w.limitHit {
		return
	}
	w.limitHit = true
	w.add(ArchiveLimit, path, detail)
}

// exhausted ends the walk on a spent budget.
func (w *archiveWalk) exhausted(path, detail string) {
	w.limit(path, detail)
	w.done = true
}

func (w *archiveWalk) tooManyEntries(path string) {
	w.exhausted(path, "more than "+strconv.Itoa(w.a.cfg.Archive.MaxEntries)+" entries")
}

// take counts one entry against the budget.
func (w *archiveWalk) take(path string) bool {
	if w.ctx.Err() != nil {
		w.done = true
	}
	if w.done {
		return false
	}
	if w.entriesLeft <= 0 {
		w.tooManyEntries(path)
		return false
	}
	w.entriesLeft--
	return true
}

// cut reports, after a failed read, whether the walk is to end: the byte
// budget is spent (its finding is made here) or the context ended. If
// not, the read failed on damaged data.
func (w *archiveWalk) cut(path string) bool {
	if w.bytesLeft < 0 {
		w.exhausted(path, "more than "+strconv.FormatInt(w.a.cfg.Archive.MaxBytes, 10)+" bytes decompressed")
	}
	if w.ctx.Err() != nil {
		w.done = true
	}
	return w.done
}

// damaged reports an archive that could not be read to the end: what
// follows the damage is unseen, so it counts as one the walker cannot
// open.
func (w *archiveWalk) damaged(path, what string) {
	if !w.cut(path) {
		w.add(UnopenableArchive, path, "damaged "+what)
	}
}

// name judges the name of an archive member; it reports whether the
// name was banned.
func (w *archiveWalk) name(name, full string) bool {
	if k, d, ok := w.a.checkName(name); ok {
		w.add(k, full, d)
		return true
	}
	return false
}

// budgetReader counts the bytes that come out of a decompressor against
// the walk's byte budget and fails once it is spent or the context ends.
type budgetReader struct {
	w *archiveWalk
	r io.Reader
}

func (b budgetReader) Read(p []byte) (int, error) {
	if err := b.w.ctx.Err(); err != nil {
		return 0, err
	}
	if b.w.done || b.w.bytesLeft < 0 {
		return 0, errBudget
	}
	if int64(len(p)) > b.w.bytesLeft+1 {
		p = p[:b.w.bytesLeft+1] // one byte over says "more than the budget"
	}
	n, err := b.r.Read(p)
	b.w.bytesLeft -= int64(n)
	if b.w.bytesLeft < 0 {
		return n, errBudget
	}
	return n, err
}

// headSize is how much of a member is read to judge it: enough for every
// magic number and for tar's first header block.
const headSize = 512

// head reads the first headSize bytes of r, fewer if r ends sooner.
func head(r io.Reader) ([]byte, error) {
	buf := make([]byte, headSize)
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return buf[:n], nil
}

// blob looks inside data, a file whose bytes are all in memory (an
// attachment, or a member read whole), which would be an archive at
// depth (1 for an attachment).
func (w *archiveWalk) blob(data []byte, path string, depth int) {
	kind, what := archiveKindOf(data)
	w.open(kind, what, data, nil, int64(len(data)), path, depth)
}

// readAll reads a member whole (archive/zip needs to seek). A counted
// reader fails past the byte budget; the buffer is allocated once when
// the size is known (a zip entry's declared size bounds what archive/zip
// reads of it, a tar header's is exact), and the room a member said it
// needed but did not use is charged to the budget: lying sizes cannot
// make the walk allocate more than the budget either.
func (w *archiveWalk) readAll(r io.Reader, size int64) ([]byte, error) {
	limit := w.bytesLeft + 1 + headSize // the head is read already
	var buf []byte
	if size >= 0 {
		buf = make([]byte, 0, min(size, limit)+1) // +1: room to read the end
	} else {
		buf = make([]byte, 0, min(limit, 64<<10))
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == nil {
			continue
		}
		if unused := int64(cap(buf) - len(buf)); size >= 0 && unused > 64<<10 {
			w.bytesLeft -= unused
		}
		if err == io.EOF {
			err = nil
		}
		if err == nil && w.bytesLeft < 0 {
			err = errBudget
		}
		return buf, err
	}
}

// open looks inside an archive of a known kind, in memory (data) or to
// be read from r, whose size is at most size (-1: not known).
func (w *archiveWalk) open(kind archiveKind, what string, data []byte, r io.Reader, size int64, path string, depth int) {
	switch {
	case kind == notArchive || w.done:
		return
	case kind == kindUnopenable:
		w.add(UnopenableArchive, path, what)
		return
	case depth > w.a.cfg.Archive.MaxDepth:
		w.limit(path, "archives nested deeper than "+strconv.Itoa(w.a.cfg.Archive.MaxDepth))
		return
	}
	if data != nil {
		r = bytes.NewReader(data)
	}
	switch kind {
	case kindZip:
		if data == nil {
			var err error
			if data, err = w.readAll(r, size); err != nil {
				w.damaged(path, "zip archive")
				return
			}
		}
		w.zip(data, path, depth)
	case kindTar:
		w.tarFile(data, r, path, depth)
	case kindGzip, kindBzip2:
		w.compressed(kind, r, path, depth)
	}
}

// tarFile walks a tar archive. One in memory is also looked at past its
// end: a zip appended to a tar is what unzip sees of the file.
func (w *archiveWalk) tarFile(data []byte, r io.Reader, path string, depth int) {
	if !w.tar(r, path, depth, data == nil) || data == nil {
		return
	}
	if rest := r.(*bytes.Reader).Len(); rest > 0 {
		if tail := data[len(data)-rest:]; hasZipStructure(tail) {
			w.zip(tail, path, depth)
		}
	}
}

// tar walks the entries of a tar archive; it reports whether it reached
// the archive's end. counted says r counts its bytes against the budget
// already (it comes out of a decompressor); if not (a tar in memory),
// what is read of the members is counted.
func (w *archiveWalk) tar(r io.Reader, path string, depth int, counted bool) bool {
	tr := tar.NewReader(r)
	var members io.Reader = tr
	if !counted {
		members = budgetReader{w: w, r: tr}
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return true
		}
		if err != nil {
			w.damaged(path, "tar archive")
			return false
		}
		if !w.take(path) {
			return false
		}
		if hdr.Typeflag == tar.TypeDir {
			continue
		}
		full := path + "/" + hdr.Name
		nameBanned := w.name(hdr.Name, full)
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		default:
			continue // links, devices: a name without content of its own
		}
		h, err := head(members)
		if err != nil {
			w.damaged(path, "tar archive")
			return false
		}
		if !w.content(h, members, hdr.Size, hdr.Name, full, depth, nameBanned) {
			return false
		}
	}
}

// compressed looks at what a gzip or bzip2 stream holds: one file, the
// entry that holds the stream counted already. A tar inside is the same
// archive (a .tar.gz is one), anything else one level deeper.
func (w *archiveWalk) compressed(kind archiveKind, r io.Reader, path string, depth int) {
	var zr io.Reader
	stored := "" // the name the gzip header keeps (RFC 1952 §2.3.1 FNAME)
	if kind == kindGzip {
		gz, err := w.gzipReader(r)
		if err != nil {
			w.damaged(path, "gzip stream")
			return
		}
		defer func() { w.gzFree = append(w.gzFree, gz) }()
		zr, stored = gz, gz.Name
	} else {
		zr = w.bzip2Reader(r)
	}
	out := budgetReader{w: w, r: zr}
	h, err := head(out)
	if err != nil {
		w.damaged(path, kindName(kind))
		return
	}
	if k, _ := archiveMagic(h); k == kindTar {
		w.tar(io.MultiReader(bytes.NewReader(h), out), path, depth, true)
		return
	}
	name := innerName(path, stored)
	nameBanned := false
	if name != "" {
		nameBanned = w.name(name, path+"/"+name)
	} else {
		name = path
	}
	w.content(h, out, -1, name, path+"/"+name, depth, nameBanned)
}

// gzipReader opens a gzip stream, with a decoder used before if one is
// free: a zip of thousands of small .gz files costs one decoder's
// allocations, not thousands.
func (w *archiveWalk) gzipReader(r io.Reader) (*gzip.Reader, error) {
	if n := len(w.gzFree); n > 0 {
		gz := w.gzFree[n-1]
		if err := gz.Reset(r); err != nil {
			return nil, err // Reset starts afresh: the decoder stays in the list
		}
		w.gzFree = w.gzFree[:n-1]
		return gz, nil
	}
	return gzip.NewReader(r)
}

// bzip2Reader opens a bzip2 stream and charges the byte budget with the
// block buffer the decoder allocates, 400 kB per level (3.6 MB at -9):
// a zip of thousands of tiny bzip2 entries would otherwise allocate that
// much for each.
func (w *archiveWalk) bzip2Reader(r io.Reader) io.Reader {
	br := bufio.NewReaderSize(r, 16)
	if b, err := br.Peek(4); err == nil && b[3] >= '1' && b[3] <= '9' {
		w.bytesLeft -= int64(b[3]-'0') * 400_000
	}
	return bzip2.NewReader(br)
}

func kindName(k archiveKind) string {
	if k == kindGzip {
		return "gzip stream"
	}
	return "bzip2 stream"
}

// innerName is the name of what a compressed file holds: the one its
// header keeps, else its own name without the compression's extension,
// as gunzip and bunzip2 name it. "" when neither says.
func innerName(outer, stored string) string {
	if stored != "" {
		return stored
	}
	base := path.Base(strings.ReplaceAll(outer, "\\", "/"))
	lower := strings.ToLower(base)
	for _, s := range []struct{ ext, repl string }{
		{".tgz", ".tar"}, {".taz", ".tar"}, {".tbz", ".tar"}, {".tbz2", ".tar"},
		{".gz", ""}, {".z", ""}, {".bz2", ""}, {".bz", ""},
	} {
		if strings.HasSuffix(lower, s.ext) && len(base) > len(s.ext) {
			return base[:len(base)-len(s.ext)] + s.repl
		}
	}
	return ""
}

// archiveNames are extensions that promise an archive: a member so named
// whose start is none is read whole, to look for one after a prefix.
var archiveNames = map[string]bool{"zip": true, "tar": true, "tgz": true, "gz": true, "bz2": true, "tbz": true, "tbz2": true}

// content judges one member from its first bytes h, then looks inside it
// if it is an archive; rest reads what follows h, size is the member's
// size if known (-1 if not). It reports whether the walk goes on.
func (w *archiveWalk) content(h []byte, rest io.Reader, size int64, name, full string, depth int, nameBanned bool) bool {
	if k, d, ok := w.a.memberContent(name, Sniff(h), nameBanned); ok {
		w.add(k, full, d)
	}
	kind, what := archiveMagic(h)
	all := io.MultiReader(bytes.NewReader(h), rest)
	if kind == notArchive {
		if !archiveNames[extension(name)] {
			return !w.done
		}
		data, err := w.readAll(all, size)
		if err != nil {
			w.damaged(full, "archive member")
			return !w.done
		}
		w.blob(data, full, depth+1)
		return !w.done
	}
	w.open(kind, what, nil, all, size, full, depth+1)
	return !w.done
}

// extension is the lower-case extension of a file name, without the dot.
func extension(name string) string {
	if i := strings.LastIndexAny(name, "./\\"); i >= 0 && name[i] == '.' {
		return strings.ToLower(name[i+1:])
	}
	return ""
}
