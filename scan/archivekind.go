package scan

import (
	"bytes"
	"encoding/binary"
	"strings"
)

// archiveKind is what the bytes of a file say it is, as far as looking
// inside goes. Content decides, never the name or the declared type.
type archiveKind uint8

const (
	notArchive     archiveKind = iota
	kindZip                    // zip structures: at the start, or after a prefix (self-extracting)
	kindTar                    // POSIX, GNU or v7 tar
	kindGzip                   // RFC 1952
	kindBzip2                  // bzip2 stream
	kindUnopenable             // an archive or compression the walker cannot open
)

// The zip signatures (APPNOTE.TXT §4.3.7, §4.3.12, §4.3.16).
var (
	zipLocalHeader   = []byte("PK\x03\x04")
	zipCentralHeader = []byte("PK\x01\x02")
	zipEndHeader     = []byte("PK\x05\x06")
)

// unopenableMagics are archives and compressions the walker recognises
// but cannot open: what is inside them stays unseen. Only magic numbers
// long enough not to turn up at the start of ordinary files.
var unopenableMagics = []struct {
	off   int
	magic string
	what  string
}{
	{0, "Rar!\x1a\x07\x00", "rar archive"},     // RAR 1.5 to 4
	{0, "Rar!\x1a\x07\x01\x00", "rar archive"}, // RAR 5
	{0, "7z\xbc\xaf\x27\x1c", "7z archive"},
	{0, "\xfd7zXZ\x00", "xz stream"},
	{0, "\x28\xb5\x2f\xfd", "zstd stream"},
	{0, "MSCF\x00\x00\x00\x00", "cab archive"},
	{0, "LZIP\x01", "lzip stream"},
	{0, "\x1f\x9d", "compress (.Z) stream"},
	{0, "xar!\x00\x1c", "xar archive"},
	{0, "!<arch>\n", "ar archive"},
	{0, "SZDD\x88\xf0\x27\x33", "ms-compress stream"},
	{0, "KWAJ\x88\xf0\x27\xd1", "ms-compress stream"},
	{7, "**ACE**", "ace archive"},
}

// archiveMagic recognises an archive by what its first bytes say; head
// should hold the first 512 bytes (tar's header block) when there are
// that many. It does not look for zip structures after a prefix.
func archiveMagic(head []byte) (archiveKind, string) {
	switch {
	case bytes.HasPrefix(head, zipLocalHeader), bytes.HasPrefix(head, zipEndHeader),
		bytes.HasPrefix(head, []byte("PK\x07\x08PK\x03\x04")): // split-archive marker first
		return kindZip, "zip archive"
	case bytes.HasPrefix(head, []byte("\x1f\x8b\x08")): // RFC 1952 §2.3.1: CM 8, deflate
		return kindGzip, "gzip stream"
	case len(head) >= 4 && bytes.HasPrefix(head, []byte("\x1f\x8b")) && head[3]&0xe0 == 0:
		return kindUnopenable, "gzip stream with an unknown compression method"
	case len(head) >= 10 && string(head[:3]) == "BZh" && head[3] >= '1' && head[3] <= '9' &&
		(string(head[4:10]) == "\x31\x41\x59\x26\x53\x59" || string(head[4:10]) == "\x17\x72\x45\x38\x50\x90"):
		return kindBzip2, "bzip2 stream"
	case isTarHeader(head):
		return kindTar, "tar archive"
	}
	for _, m := range unopenableMagics {
		if len(head) >= m.off+len(m.magic) && string(head[m.off:m.off+len(m.magic)]) == m.magic {
			return kindUnopenable, m.what
		}
	}
	switch {
	case isLZH(head):
		return kindUnopenable, "lzh archive"
	case isARJ(head):
		return kindUnopenable, "arj archive"
	case isCPIO(head):
		return kindUnopenable, "cpio archive"
	}
	return notArchive, ""
}

// archiveKindOf is archiveMagic, then zip structures anywhere in data:
// a self-extracting program or any prefix before a zip (unzip, 7-Zip and
// WinRAR open those) is a zip.
func archiveKindOf(data []byte) (archiveKind, string) {
	if k, what := archiveMagic(data); k != notArchive {
		return k, what
	}
	if hasZipStructure(data) {
		return kindZip, "zip archive after a prefix"
	}
	return notArchive, ""
}

// isTarHeader reports whether b starts with a tar header block: the
// POSIX or GNU magic at offset 257, or (v7 archives have none) a header
// checksum that adds up.
func isTarHeader(b []byte) bool {
	if len(b) < 512 {
		return false
	}
	if string(b[257:263]) == "ustar\x00" || string(b[257:265]) == "ustar  \x00" {
		return true
	}
	if b[0] == 0 {
		return false
	}
	want, ok := octalField(b[148:156])
	if !ok {
		return false
	}
	// POSIX sums the bytes unsigned with the checksum field as spaces;
	// some old tars summed them signed.
	var unsigned, signed int64
	for i, c := range b[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return want == unsigned || want == signed
}

// octalField parses a tar number: octal digits, padded with spaces or
// NULs on either side.
func octalField(f []byte) (int64, bool) {
	i := 0
	for i < len(f) && (f[i] == ' ' || f[i] == 0) {
		i++
	}
	var n int64
	digits := 0
	for ; i < len(f) && f[i] >= '0' && f[i] <= '7'; i++ {
		n = n<<3 | int64(f[i]-'0')
		digits++
	}
	for ; i < len(f); i++ {
		if f[i] != ' ' && f[i] != 0 {
			return 0, false
		}
	}
	return n, digits > 0
}

// isLZH: "-lh5-" and kin at offset 2 of the first header.
func isLZH(b []byte) bool {
	if len(b) < 7 || b[2] != '-' || b[3] != 'l' || b[6] != '-' {
		return false
	}
	return (b[4] == 'h' && (b[5] >= '0' && b[5] <= '7' || b[5] == 'd')) ||
		(b[4] == 'z' && (b[5] == 's' || b[5] == '4' || b[5] == '5'))
}

// isARJ: the main header, 0x60 0xEA then a header of sane size whose
// file type is 2 (the archive's own header).
func isARJ(b []byte) bool {
	if len(b) < 11 || b[0] != 0x60 || b[1] != 0xea {
		return false
	}
	size := binary.LittleEndian.Uint16(b[2:])
	return size >= 30 && size <= 2600 && b[4] >= 30 && b[10] == 2
}

// isCPIO: the portable ASCII headers, whose fields are all digits.
func isCPIO(b []byte) bool {
	digits := func(s []byte, base int) bool {
		for _, c := range s {
			if base == 8 && (c < '0' || c > '7') || base == 16 && !strings.ContainsRune("0123456789abcdefABCDEF", rune(c)) {
				return false
			}
		}
		return true
	}
	switch {
	case len(b) >= 76 && string(b[:6]) == "070707":
		return digits(b[6:76], 8)
	case len(b) >= 110 && (string(b[:6]) == "070701" || string(b[:6]) == "070702"):
		return digits(b[6:110], 16)
	}
	return false
}

// hasZipStructure reports whether data holds a plausible zip local
// header or end-of-central-directory record anywhere.
func hasZipStructure(data []byte) bool {
	found := false
	zipSignatures(data, func(off int, local bool) bool {
		if local {
			_, found = parseLocalHeader(data, off)
		} else {
			_, found = parseEndRecord(data, off)
		}
		return !found
	})
	return found
}

// zipSignatures calls fn with the offset of every local header ("PK\3\4",
// local true) and end record ("PK\5\6") signature in data, in order,
// while fn returns true.
func zipSignatures(data []byte, fn func(off int, local bool) bool) {
	for i := 0; i+4 <= len(data); {
		j := bytes.Index(data[i:], []byte("PK"))
		if j < 0 || i+j+4 > len(data) {
			return
		}
		p := i + j
		switch {
		case data[p+2] == 3 && data[p+3] == 4:
			if !fn(p, true) {
				return
			}
		case data[p+2] == 5 && data[p+3] == 6:
			if !fn(p, false) {
				return
			}
		}
		i = p + 1
	}
}

// localHeader is a zip local file header (APPNOTE.TXT §4.3.7).
type localHeader struct {
	off     int // of the signature
	dataOff int // of the file data
	flags   uint16
	method  uint16
	csize   uint64 // compressed size; not known with flag bit 3
	name    string
	uname   string // the Info-ZIP Unicode Path extra field's name, if any
}

// knownMethods are the compression methods of APPNOTE.TXT §4.4.5: a
// local header with another one is taken for chance bytes.
var knownMethods = map[uint16]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 8: true, 9: true,
	10: true, 12: true, 14: true, 16: true, 18: true, 19: true, 93: true, 94: true, 95: true, 96: true, 97: true, 98: true, 99: true}

// parseLocalHeader reads the local header at off if it is plausible: a
// known version and method and a name that fits in data.
func parseLocalHeader(data []byte, off int) (localHeader, bool) {
	b := data[off:]
	if len(b) < 30 {
		return localHeader{}, false
	}
	version := binary.LittleEndian.Uint16(b[4:])
	h := localHeader{off: off, flags: binary.LittleEndian.Uint16(b[6:]), method: binary.LittleEndian.Uint16(b[8:]),
		csize: uint64(binary.LittleEndian.Uint32(b[18:]))}
	nameLen, extraLen := int(binary.LittleEndian.Uint16(b[26:])), int(binary.LittleEndian.Uint16(b[28:]))
	if version&0xff > 100 || version>>8 > 30 || !knownMethods[h.method] || nameLen == 0 || 30+nameLen+extraLen > len(b) {
		return localHeader{}, false
	}
	h.name = string(b[30 : 30+nameLen])
	h.dataOff = off + 30 + nameLen + extraLen
	extra := b[30+nameLen : 30+nameLen+extraLen]
	if h.csize == 0xffffffff { // ZIP64: the sizes are in the extra field (§4.5.3)
		h.csize = zip64Size(extra)
	}
	h.uname = unicodePath(extra)
	return h, true
}

// unicodePath returns the name an Info-ZIP Unicode Path extra field
// (APPNOTE.TXT §4.6.9, id 0x7075) gives an entry: unzip and 7-Zip
// extract under it instead of the header's name, archive/zip ignores it.
func unicodePath(extra []byte) string {
	for len(extra) >= 4 {
		id, size := binary.LittleEndian.Uint16(extra), int(binary.LittleEndian.Uint16(extra[2:]))
		if size > len(extra)-4 {
			break
		}
		if id == 0x7075 && size > 5 && extra[4] == 1 { // version 1, CRC-32 of the header's name, the name
			return string(extra[9 : 4+size])
		}
		extra = extra[4+size:]
	}
	return ""
}

// zip64Size returns the compressed size of a ZIP64 extended information
// extra field in a local header, or the largest size when there is none.
func zip64Size(extra []byte) uint64 {
	for len(extra) >= 4 {
		id, size := binary.LittleEndian.Uint16(extra), int(binary.LittleEndian.Uint16(extra[2:]))
		if size > len(extra)-4 {
			break
		}
		if id == 1 && size >= 16 {
			return binary.LittleEndian.Uint64(extra[12:])
		}
		extra = extra[4+size:]
	}
	return 1<<63 - 1
}

// endRecord is an end of central directory record (APPNOTE.TXT §4.3.16).
type endRecord struct {
	off     int // of the signature
	records int // entries it declares (0xffff: see the ZIP64 record)
}

// parseEndRecord reads the end record at off if it is plausible: its
// comment fits in data and its directory lies before it.
func parseEndRecord(data []byte, off int) (endRecord, bool) {
	b := data[off:]
	if len(b) < 22 {
		return endRecord{}, false
	}
	dirSize := binary.LittleEndian.Uint32(b[12:])
	commentLen := int(binary.LittleEndian.Uint16(b[20:]))
	if 22+commentLen > len(b) || (dirSize != 0xffffffff && int64(dirSize) > int64(off)) {
		return endRecord{}, false
	}
	return endRecord{off: off, records: int(binary.LittleEndian.Uint16(b[10:]))}, true
}
