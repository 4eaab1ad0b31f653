package scan

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"strconv"
)

// zipCentralHeader starts every central directory record (APPNOTE.TXT
// §4.3.12). Counting it is a cheap upper bound of the entries, taken
// before archive/zip allocates one File per record.
var zipCentralHeader = []byte("PK\x01\x02")

// archiveWalk looks inside the zip archives of one message, within one
// budget of entries and bytes.
type archiveWalk struct {
	a           *AttachmentPolicy
	ctx         context.Context
	part        string
	entriesLeft int
	bytesLeft   int64
	out         *[]Finding
	limitHit    bool
}

func (w *archiveWalk) limit(path, detail string) {
	if w.limitHit {
		return // one finding is enough
	}
	w.limitHit = true
	*w.out = append(*w.out, Finding{Kind: ArchiveLimit, Part: w.part, Name: path, Detail: detail})
}

// zip inspects one archive; depth is 1 for an archive attached to the
// mail.
func (w *archiveWalk) zip(data []byte, path string, depth int) {
	if bytes.Count(data, zipCentralHeader) > w.entriesLeft {
		w.limit(path, "more than "+strconv.Itoa(w.a.cfg.Archive.MaxEntries)+" entries")
		return
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return // not a zip archive/zip can read: left to the virus scanner
	}
	for _, f := range zr.File {
		if w.ctx.Err() != nil {
			return
		}
		if w.entriesLeft <= 0 {
			w.limit(path, "more than "+strconv.Itoa(w.a.cfg.Archive.MaxEntries)+" entries")
			return
		}
		w.entriesLeft--
		if f.FileInfo().IsDir() {
			continue
		}
		full := path + "/" + f.Name
		nameBanned := false
		if k, d, ok := w.a.checkName(f.Name); ok {
			*w.out = append(*w.out, Finding{Kind: k, Part: w.part, Name: full, Detail: d})
			nameBanned = true
		}
		if f.Flags&0x1 != 0 { // APPNOTE §4.4.4 bit 0: encrypted
			if w.a.cfg.BlockEncryptedArchives {
				*w.out = append(*w.out, Finding{Kind: EncryptedArchive, Part: w.part, Name: full, Detail: "encrypted entry"})
			}
			continue
		}
		if !w.entry(f, full, depth, nameBanned) {
			return
		}
	}
}

// entry reads the start of one entry, and the whole of a nested archive;
// it reports false when the byte budget is spent.
func (w *archiveWalk) entry(f *zip.File, full string, depth int, nameBanned bool) bool {
	rc, err := f.Open()
	if err != nil {
		return true // an unsupported method: nothing to see
	}
	defer rc.Close()
	head := make([]byte, min(512, w.bytesLeft))
	n, _ := io.ReadFull(rc, head)
	head = head[:n]
	w.bytesLeft -= int64(n)
	sniffed := Sniff(head)
	if IsExecutable(sniffed) && !w.a.cfg.AllowExecutables && !nameBanned {
		*w.out = append(*w.out, Finding{Kind: ExecutableContent, Part: w.part, Name: full, Detail: "content " + sniffed})
	}
	if sniffed != "application/zip" {
		return w.bytesLeft > 0
	}
	if depth >= w.a.cfg.Archive.MaxDepth {
		w.limit(full, "archives nested deeper than "+strconv.Itoa(w.a.cfg.Archive.MaxDepth))
		return true
	}
	rest, _ := io.ReadAll(io.LimitReader(rc, w.bytesLeft+1))
	if int64(len(rest)) > w.bytesLeft {
		w.limit(full, "more than "+strconv.FormatInt(w.a.cfg.Archive.MaxBytes, 10)+" bytes decompressed")
		return false
	}
	w.bytesLeft -= int64(len(rest))
	w.zip(append(head, rest...), full, depth+1)
	return true
}
