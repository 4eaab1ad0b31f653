package main

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"strings"
)

// nestedZip wraps a file in depth zip archives, each inside the next.
func nestedZip(depth int, name string, content []byte) []byte {
	for i := range depth {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		f, err := zw.Create(name)
		if err == nil {
			_, err = f.Write(content)
		}
		if err == nil {
			err = zw.Close()
		}
		if err != nil {
			panic(err) // writing to memory does not fail
		}
		content, name = buf.Bytes(), "level"+string(rune('0'+i))+".zip"
	}
	return content
}

func encodeBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// wrap76 breaks base64 into lines of 76 characters (RFC 2045 §6.8).
func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}
