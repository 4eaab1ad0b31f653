package scan

import (
	"bytes"
	"net/http"
	"strings"
)

// Media types Sniff reports beyond those of http.DetectContentType.
const (
	TypeWindowsExecutable = "application/x-msdownload"  // MZ: DOS and PE
	TypeELF               = "application/x-executable"  // ELF
	TypeMachO             = "application/x-mach-binary" // Mach-O, fat binaries
	TypeJavaClass         = "application/java-vm"       // also the fat Mach-O magic
	TypeShortcut          = "application/x-ms-shortcut" // Windows .lnk
	TypeOLE               = "application/x-ole-storage" // doc, xls, msi, msg
	Type7z                = "application/x-7z-compressed"
	TypeCAB               = "application/vnd.ms-cab-compressed"
	TypeTar               = "application/x-tar"
	TypeBzip2             = "application/x-bzip2"
	TypeXz                = "application/x-xz"
	TypeZstd              = "application/zstd"
)

// magic numbers checked before http.DetectContentType, which knows none of
// these (its table is the WHATWG MIME Sniffing Standard).
var magics = []struct {
	prefix []byte
	typ    string
}{
	{[]byte("MZ"), TypeWindowsExecutable},
	{[]byte("\x7fELF"), TypeELF},
	{[]byte("\xfe\xed\xfa\xce"), TypeMachO},
	{[]byte("\xfe\xed\xfa\xcf"), TypeMachO},
	{[]byte("\xce\xfa\xed\xfe"), TypeMachO},
	{[]byte("\xcf\xfa\xed\xfe"), TypeMachO},
	{[]byte("\xca\xfe\xba\xbe"), TypeJavaClass},
	{[]byte("L\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00F"), TypeShortcut},
	{[]byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"), TypeOLE},
	{[]byte("7z\xbc\xaf\x27\x1c"), Type7z},
	{[]byte("MSCF\x00\x00\x00\x00"), TypeCAB},
	{[]byte("\xfd7zXZ\x00"), TypeXz},
	{[]byte("\x28\xb5\x2f\xfd"), TypeZstd},
}

// Sniff returns the media type of content judged from its first bytes:
// executables and a few archive formats by their magic numbers (tar by
// its header block), the rest by http.DetectContentType, without
// parameters.
func Sniff(content []byte) string {
	for _, m := range magics {
		if bytes.HasPrefix(content, m.prefix) {
			return m.typ
		}
	}
	if isTarHeader(content) {
		return TypeTar
	}
	if len(content) >= 4 && string(content[:3]) == "BZh" && content[3] >= '1' && content[3] <= '9' {
		return TypeBzip2
	}
	t := http.DetectContentType(content)
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = t[:i]
	}
	return t
}

// IsExecutable reports whether a media type (declared or sniffed) is that
// of a program.
func IsExecutable(mediaType string) bool {
	switch mediaType {
	case TypeWindowsExecutable, TypeELF, TypeMachO, TypeJavaClass, TypeShortcut,
		"application/x-dosexec", "application/x-msdos-program", "application/x-ms-dos-executable",
		"application/vnd.microsoft.portable-executable", "application/x-elf", "application/x-sharedlib",
		"application/x-ms-installer", "application/x-msi", "application/x-ms-application":
		return true
	}
	return false
}

// family groups media types for the mismatch test: a declared type of one
// family over content of another is a disguise.
func family(mediaType string) string {
	major, _, _ := strings.Cut(mediaType, "/")
	switch {
	case IsExecutable(mediaType):
		return "program"
	case major == "image", major == "audio", major == "video", major == "text", major == "font":
		return major
	case mediaType == "application/pdf":
		return "pdf"
	case mediaType == "application/zip", mediaType == "application/x-zip-compressed",
		mediaType == "application/x-rar-compressed", mediaType == "application/vnd.rar",
		mediaType == Type7z, mediaType == "application/x-gzip", mediaType == "application/gzip",
		mediaType == TypeCAB, mediaType == TypeTar, mediaType == TypeBzip2, mediaType == TypeXz,
		mediaType == TypeZstd, mediaType == "application/x-compressed-tar", mediaType == "application/x-gtar":
		return "archive"
	case mediaType == "application/ogg":
		return "audio"
	}
	return "" // unknown, generic or a container format many types share
}
