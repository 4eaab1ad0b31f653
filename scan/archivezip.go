package scan

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
)

// zipView is what archive/zip sees of one zip archive in a file that may
// hold several: the bytes up to one end record, whose comment is cut
// off (its length reads as 0) so that this record is the one found.
// archive/zip finds the start of an archive after a prefix itself
// (Reader's baseOffset), which is how self-extracting zips open.
type zipView []byte

func (v zipView) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("scan: negative offset")
	}
	if off >= int64(len(v)) {
		return 0, io.EOF
	}
	n := copy(p, v[off:])
	for i := max(off, int64(len(v))-2); i < off+int64(n); i++ {
		p[i-off] = 0
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// span is a range of offsets [from, to).
type span struct{ from, to int64 }

// zipScan is what one walk over the zip structures of a file has seen.
type zipScan struct {
	locals  []localHeader
	matched []bool      // locals[i] belongs to an entry of a central directory
	byData  map[int]int // data offset → index in locals
	covered []span      // the data of the entries walked
	seen    map[string]bool
}

func (z *zipScan) inside(off int) bool {
	for _, s := range z.covered {
		if int64(off) >= s.from && int64(off) < s.to {
			return true
		}
	}
	return false
}

// zip walks every zip archive in data: each central directory archive/zip
// can read (from the last end record to the first; a prefix, another
// archive before, a self-extracting program), then every local header no
// directory listed (entries some tools extract and others do not see),
// unless it lies inside the data of an entry walked (a nested archive,
// walked as that entry).
func (w *archiveWalk) zip(data []byte, path string, depth int) {
	if bytes.Count(data, zipCentralHeader) > w.entriesLeft {
		w.tooManyEntries(path)
		return
	}
	z := &zipScan{byData: map[int]int{}, seen: map[string]bool{}}
	var ends []endRecord
	zipSignatures(data, func(off int, local bool) bool {
		if local {
			if h, ok := parseLocalHeader(data, off); ok {
				z.byData[h.dataOff] = len(z.locals)
				z.locals = append(z.locals, h)
			}
		} else if e, ok := parseEndRecord(data, off); ok {
			ends = append(ends, e)
		}
		return len(z.locals) <= w.entriesLeft && len(ends) <= w.entriesLeft
	})
	if len(z.locals) > w.entriesLeft || len(ends) > w.entriesLeft {
		w.tooManyEntries(path)
		return
	}
	z.matched = make([]bool, len(z.locals))
	for k := len(ends) - 1; k >= 0 && !w.done; k-- {
		if !z.inside(ends[k].off) {
			w.directory(data, ends[k], z, path, depth)
		}
	}
	for i, h := range z.locals {
		if w.done {
			return
		}
		if !z.matched[i] && !z.inside(h.off) {
			w.hiddenEntry(data, h, path, depth)
		}
	}
}

// directory walks the archive that ends at end record e.
func (w *archiveWalk) directory(data []byte, e endRecord, z *zipScan, path string, depth int) {
	if e.records != 0xffff && e.records > w.entriesLeft {
		w.tooManyEntries(path)
		return
	}
	zr, err := zip.NewReader(zipView(data[:e.off+22]), int64(e.off+22))
	if err != nil {
		return // not an end record after all; the local headers are still walked
	}
	zr.RegisterDecompressor(12, func(r io.Reader) io.ReadCloser { return io.NopCloser(w.bzip2Reader(r)) })
	for _, f := range zr.File {
		if !w.take(path) {
			return
		}
		var local localHeader
		if off, err := f.DataOffset(); err == nil {
			key := strconv.FormatInt(off, 10) + "/" + f.Name
			if z.seen[key] {
				continue // the same entry through another end record
			}
			z.seen[key] = true
			// The data ends where the shorter of the two headers says:
			// a directory that claims more cannot hide the local headers
			// a streaming extractor finds after it.
			size := f.CompressedSize64
			if i, ok := z.byData[int(off)]; ok {
				z.matched[i] = true
				local = z.locals[i]
				if local.flags&8 == 0 {
					size = min(size, local.csize)
				}
			}
			z.covered = append(z.covered, span{off, off + int64(min(size, uint64(len(data))))})
		}
		if !w.zipEntry(f, local, path, depth) {
			return
		}
	}
}

// encrypted reports flag bits 0 (encrypted) and 6 (strong encryption),
// or method 99 (AES, as WinZip and 7-Zip write it): APPNOTE.TXT §4.4.4.
func encrypted(flags, method uint16) bool { return flags&(1|1<<6) != 0 || method == 99 }

// zipMethod reports whether the walker can decompress a method: store,
// deflate and bzip2.
func zipMethod(method uint16) bool {
	return method == zip.Store || method == zip.Deflate || method == 12
}

func methodDetail(m uint16) string {
	return "zip entry compressed with method " + strconv.Itoa(int(m))
}

// zipEntry judges one entry of a central directory; local is its local
// header when one was found (its name may differ from the directory's:
// extractors that read the stream see that one).
func (w *archiveWalk) zipEntry(f *zip.File, local localHeader, path string, depth int) bool {
	if strings.HasSuffix(f.Name, "/") && f.UncompressedSize64 == 0 {
		return true // a directory
	}
	full := path + "/" + f.Name
	nameBanned := w.otherNames(path, f.Name, local.name, local.uname, unicodePath(f.Extra))
	switch {
	case encrypted(f.Flags|local.flags, f.Method):
		w.add(EncryptedArchive, full, "encrypted zip entry")
		return true
	case !zipMethod(f.Method):
		w.add(UnopenableArchive, full, methodDetail(f.Method))
		return true
	}
	rc, err := f.Open()
	if err != nil {
		w.damaged(full, "zip entry")
		return !w.done
	}
	defer rc.Close()
	r := budgetReader{w: w, r: rc}
	h, err := head(r)
	if err != nil {
		w.damaged(full, "zip entry")
		return !w.done
	}
	size := int64(-1)
	if f.UncompressedSize64 < 1<<62 {
		size = int64(f.UncompressedSize64)
	}
	return w.content(h, r, size, f.Name, full, depth, nameBanned)
}

// otherNames judges every name a zip entry goes by, the first one being
// the one reported (the central directory's, else the local header's):
// extractors differ in which they use. It reports whether one was
// banned.
func (w *archiveWalk) otherNames(path, name string, others ...string) bool {
	banned := w.name(name, path+"/"+name)
	for i, o := range others {
		if o != "" && o != name && !slices.Contains(others[:i], o) {
			banned = w.name(o, path+"/"+o) || banned
		}
	}
	return banned
}

// hiddenEntry judges an entry known only by its local header. A
// damaged one is not reported: the header may be chance bytes in a file
// that holds no zip at all.
func (w *archiveWalk) hiddenEntry(data []byte, h localHeader, path string, depth int) {
	if !w.take(path) {
		return
	}
	full := path + "/" + h.name
	nameBanned := w.otherNames(path, h.name, h.uname)
	if strings.HasSuffix(h.name, "/") && h.csize == 0 {
		return
	}
	if encrypted(h.flags, h.method) {
		w.add(EncryptedArchive, full, "encrypted zip entry")
		return
	}
	body := data[h.dataOff:]
	if h.flags&8 == 0 && h.csize < uint64(len(body)) { // bit 3: the sizes follow the data
		body = body[:h.csize]
	}
	var r io.Reader
	switch h.method {
	case zip.Store:
		r = bytes.NewReader(body)
	case zip.Deflate:
		fr := flate.NewReader(bytes.NewReader(body))
		defer fr.Close()
		r = fr
	case 12:
		r = w.bzip2Reader(bytes.NewReader(body))
	default:
		w.add(UnopenableArchive, full, methodDetail(h.method))
		return
	}
	br := budgetReader{w: w, r: r}
	hd, err := head(br)
	if err != nil {
		w.cut(full)
		return
	}
	w.content(hd, br, -1, h.name, full, depth, nameBanned)
}
