package scan

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// FindingKind says what a content check found.
type FindingKind uint8

// The kinds of findings.
const (
	// BannedExtension: a file name ends in a banned extension.
	BannedExtension FindingKind = iota + 1
	// DoubleExtension: a deceptive file name, a decoy extension before a
	// banned one (invoice.pdf.exe) or bidirectional controls that make
	// the name read differently (RLO tricks).
	DoubleExtension
	// TypeMismatch: the declared type hides what the content is (an
	// executable declared image/jpeg).
	TypeMismatch
	// ExecutableContent: a program, whatever its name.
	ExecutableContent
	// EncryptedArchive: an encrypted entry in a zip archive, which no
	// scanner can look into.
	EncryptedArchive
	// ArchiveLimit: an archive too deeply nested, with too many entries or
	// too much data to inspect (a zip bomb looks like this).
	ArchiveLimit
	// KeywordMatch: a keyword rule matched.
	KeywordMatch
	// UnopenableArchive: an archive the walker cannot look into: rar, 7z,
	// xz, zstd, cab, lzh, arj, ace, cpio and kin, a zip entry compressed
	// with a method other than store, deflate and bzip2, or a damaged
	// archive whose rest is unseen.
	UnopenableArchive
)

var kindNames = [...]string{"", "banned-extension", "double-extension", "type-mismatch",
	"executable-content", "encrypted-archive", "archive-limit", "keyword", "unopenable-archive"}

func (k FindingKind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("finding(%d)", uint8(k))
}

// Finding is one thing a content check found.
type Finding struct {
	Kind FindingKind
	// Part is the ID of the MIME part.
	Part string
	// Name is the file name; inside an archive the path through it,
	// "outer.zip/inner.zip/eicar.com".
	Name string
	// Detail says what was found, for logs.
	Detail string
	// Rule is the keyword rule of a KeywordMatch.
	Rule string
	// Action is the rule's action for KeywordMatch, and
	// AttachmentConfig.UnopenableArchives for EncryptedArchive and
	// UnopenableArchive; ActDefault leaves it to the filter
	// (FilterConfig.OnAttachment for attachment findings).
	Action Action
}

func (f Finding) String() string {
	s := f.Kind.String() + " in part " + f.Part
	if f.Name != "" {
		s += " " + fmt.Sprintf("%q", f.Name)
	}
	if f.Detail != "" {
		s += ": " + f.Detail
	}
	return s
}

// DefaultBannedExtensions returns the extensions banned when
// AttachmentConfig.BannedExtensions is nil: programs, scripts, shortcuts,
// installers and disk images Windows opens with one click.
func DefaultBannedExtensions() []string {
	return []string{
		"ade", "adp", "app", "appx", "appxbundle", "bas", "bat", "chm", "cmd", "com", "cpl",
		"dll", "exe", "gadget", "hlp", "hta", "img", "inf", "ins", "iso", "isp", "jar", "js",
		"jse", "ksh", "lnk", "mde", "msc", "msi", "msix", "msp", "mst", "pif", "ps1", "ps1xml",
		"ps2", "psc1", "psc2", "reg", "scf", "scr", "sct", "shb", "shs", "url", "vb", "vbe",
		"vbs", "vhd", "vhdx", "wsc", "wsf", "wsh", "xll",
	}
}

// DefaultDecoyExtensions returns the extensions that, before a banned one,
// make a double extension when AttachmentConfig.DecoyExtensions is nil.
func DefaultDecoyExtensions() []string {
	return []string{
		"avi", "bmp", "csv", "doc", "docx", "gif", "htm", "html", "jpeg", "jpg", "mov", "mp3",
		"mp4", "odt", "ods", "pdf", "png", "ppt", "pptx", "rtf", "tif", "tiff", "txt", "wav",
		"xls", "xlsx", "zip",
	}
}

// ArchiveLimits bound the look inside archives, per message: one set of
// bounds for every kind (zip, tar, gzip, bzip2, nested in each other),
// enforced while reading, so that a bomb costs at most the bounds. Zero
// fields mean their defaults.
type ArchiveLimits struct {
	// MaxDepth is how many archives deep the check goes: an archive in an
	// archive attached to the mail is at depth 2. A compressed tar
	// (.tar.gz, .tar.bz2) is one archive; gzip around anything else is
	// one level. Deeper is an ArchiveLimit finding. Default 4.
	MaxDepth int
	// MaxEntries bounds the zip and tar entries looked at. Default 2000.
	MaxEntries int
	// MaxBytes bounds the bytes decompressed, counted as they come out
	// of each decompressor (a .tar.gz in a zip counts the bytes of the
	// .tar.gz and of the tar), and the memory taken to hold a nested
	// zip (read whole: archive/zip needs to seek) or to decode a bzip2
	// stream (400 kB per level). Reading stops there: an entry is read
	// to its end only when it is an archive itself or lies in a
	// compressed tar before the next one. Default 64 MiB.
	MaxBytes int64
}

// AttachmentConfig configures an AttachmentPolicy. The zero value checks
// everything with the default lists.
type AttachmentConfig struct {
	// BannedExtensions, without the dot, case-insensitive; nil means
	// DefaultBannedExtensions (an empty non-nil slice bans none).
	BannedExtensions []string
	// DecoyExtensions; nil means DefaultDecoyExtensions.
	DecoyExtensions []string
	// AllowDoubleExtensions reports invoice.pdf.exe as a plain banned
	// extension only.
	AllowDoubleExtensions bool
	// AllowTypeMismatch turns the declared-versus-content test off.
	AllowTypeMismatch bool
	// AllowExecutables lets programs pass whose name is not banned.
	AllowExecutables bool
	// UnopenableArchives is what becomes of an archive the check cannot
	// look into (EncryptedArchive and UnopenableArchive findings): an
	// encrypted zip entry, a rar or 7z archive and the like. Whatever
	// they hold reaches the recipient unseen, so by default
	// (ActDefault) they are treated as every attachment finding
	// (FilterConfig.OnAttachment: refused), as ClamAV's AlertEncrypted
	// and amavis' banned-file rules do. ActQuarantine holds them for
	// review, ActLog lets them through, recorded in the Report.
	UnopenableArchives Action
	// SkipArchives does not look inside archives.
	SkipArchives bool
	Archive      ArchiveLimits
}

// AttachmentPolicy checks the attachments of walked messages. It is
// immutable and safe for concurrent use.
type AttachmentPolicy struct {
	cfg    AttachmentConfig
	banned map[string]bool
	decoys map[string]bool
}

// NewAttachmentPolicy validates cfg and returns the policy.
func NewAttachmentPolicy(cfg AttachmentConfig) (*AttachmentPolicy, error) {
	if cfg.Archive.MaxDepth < 0 || cfg.Archive.MaxEntries < 0 || cfg.Archive.MaxBytes < 0 {
		return nil, fmt.Errorf("%w: negative archive limit", ErrConfig)
	}
	if !cfg.UnopenableArchives.valid() {
		return nil, fmt.Errorf("%w: bad action %v for unopenable archives", ErrConfig, cfg.UnopenableArchives)
	}
	if cfg.Archive.MaxDepth == 0 {
		cfg.Archive.MaxDepth = 4
	}
	if cfg.Archive.MaxEntries == 0 {
		cfg.Archive.MaxEntries = 2000
	}
	if cfg.Archive.MaxBytes == 0 {
		cfg.Archive.MaxBytes = 64 << 20
	}
	if cfg.BannedExtensions == nil {
		cfg.BannedExtensions = DefaultBannedExtensions()
	}
	if cfg.DecoyExtensions == nil {
		cfg.DecoyExtensions = DefaultDecoyExtensions()
	}
	a := &AttachmentPolicy{cfg: cfg, banned: map[string]bool{}, decoys: map[string]bool{}}
	for _, list := range []struct {
		exts []string
		m    map[string]bool
	}{{cfg.BannedExtensions, a.banned}, {cfg.DecoyExtensions, a.decoys}} {
		for _, e := range list.exts {
			e = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(e), "."))
			if e == "" || strings.ContainsAny(e, "./\\ ") {
				return nil, fmt.Errorf("%w: bad extension %q", ErrConfig, e)
			}
			list.m[e] = true
		}
	}
	a.cfg.BannedExtensions = slices.Clone(cfg.BannedExtensions)
	a.cfg.DecoyExtensions = slices.Clone(cfg.DecoyExtensions)
	return a, nil
}

// bidiControls make a name display in another order than it is stored
// (Unicode TR 9): "invoice\u202Efdp.exe" shows as "invoiceexe.pdf".
const bidiControls = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

// checkName judges a file name; ok is false when nothing is wrong.
func (a *AttachmentPolicy) checkName(name string) (kind FindingKind, detail string, ok bool) {
	base := name
	if i := strings.LastIndexAny(base, "/\\"); i >= 0 {
		base = base[i+1:]
	}
	if strings.ContainsAny(base, bidiControls) {
		return DoubleExtension, "bidirectional control characters in the name", true
	}
	// Windows ignores trailing dots and spaces: "x.exe. " runs as x.exe.
	clean := strings.TrimRight(strings.ToLower(base), ". \t")
	dot := strings.LastIndexByte(clean, '.')
	if dot < 0 {
		return 0, "", false
	}
	ext := clean[dot+1:]
	if !a.banned[ext] {
		return 0, "", false
	}
	if !a.cfg.AllowDoubleExtensions {
		rest := strings.TrimRight(clean[:dot], " \t_")
		if d := strings.LastIndexByte(rest, '.'); d >= 0 && a.decoys[rest[d+1:]] {
			return DoubleExtension, "." + rest[d+1:] + " before ." + ext, true
		}
	}
	return BannedExtension, "extension ." + ext, true
}

// checkContent judges declared type against content; ok is false when
// nothing is wrong. nameBanned says the name was reported already.
func (a *AttachmentPolicy) checkContent(declared, sniffed string, nameBanned bool) (FindingKind, string, bool) {
	if IsExecutable(sniffed) {
		if !a.cfg.AllowTypeMismatch && declared != "" && declared != "application/octet-stream" && !IsExecutable(declared) {
			return TypeMismatch, "declared " + declared + ", content " + sniffed, true
		}
		if !a.cfg.AllowExecutables && !nameBanned {
			return ExecutableContent, "content " + sniffed, true
		}
		return 0, "", false
	}
	if a.cfg.AllowTypeMismatch {
		return 0, "", false
	}
	switch fd := family(declared); fd {
	case "image", "audio", "video", "pdf", "archive":
		if fs := family(sniffed); fs != "" && fs != fd {
			return TypeMismatch, "declared " + declared + ", content " + sniffed, true
		}
	}
	return 0, "", false
}

// memberContent judges the content of an archive member, whose name is
// its only declaration: a program under a document's extension (one of
// the decoy extensions) is a type mismatch, as a program declared
// image/jpeg is in a mail; a program under another name is executable
// content.
func (a *AttachmentPolicy) memberContent(name, sniffed string, nameBanned bool) (FindingKind, string, bool) {
	if !IsExecutable(sniffed) {
		return 0, "", false
	}
	if ext := extension(name); !a.cfg.AllowTypeMismatch && a.decoys[ext] {
		return TypeMismatch, "name ." + ext + ", content " + sniffed, true
	}
	if !a.cfg.AllowExecutables && !nameBanned {
		return ExecutableContent, "content " + sniffed, true
	}
	return 0, "", false
}

// Check returns what the policy finds in the parts of c, in part order.
func (a *AttachmentPolicy) Check(ctx context.Context, c *Content) []Finding {
	var out []Finding
	aw := &archiveWalk{a: a, ctx: ctx, entriesLeft: a.cfg.Archive.MaxEntries, bytesLeft: a.cfg.Archive.MaxBytes, out: &out}
	for i := range c.Parts {
		p := &c.Parts[i]
		if p.Multipart || p.Message || ctx.Err() != nil {
			continue
		}
		nameBanned := false
		if p.FileName != "" {
			if k, d, ok := a.checkName(p.FileName); ok {
				out = append(out, Finding{Kind: k, Part: p.ID, Name: p.FileName, Detail: d})
				nameBanned = true
			}
		}
		if p.Size > 0 {
			if k, d, ok := a.checkContent(p.ContentType, p.Sniffed, nameBanned); ok {
				out = append(out, Finding{Kind: k, Part: p.ID, Name: p.FileName, Detail: d})
			}
		}
		// Content decides what an archive is, not the name or the
		// declared type: a zip after a prefix, a tar.gz called
		// report.txt, an archive declared text/plain.
		if !a.cfg.SkipArchives && p.data != nil && !aw.done {
			name := p.FileName
			if name == "" {
				name = "part-" + p.ID
			}
			aw.part = p.ID
			aw.blob(p.data, name, 1)
		}
	}
	return out
}
