package testlib

import (
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strings"
	"testing"
)

// A DSN is a delivery status notification taken apart: an RFC 6522
// multipart/report whose parts are a text for people, the RFC 3464
// message/delivery-status fields, and the original header; or, for a
// message that needed SMTPUTF8, their RFC 6533 global forms.
type DSN struct {
	Header     mail.Header
	Human      string              // the text/plain part
	PerMessage map[string]string   // the first group of delivery-status fields
	Recipients []map[string]string // one group of fields per recipient
	Original   string              // the text/rfc822-headers part, or message/rfc822 (RET=FULL), or their global forms
	Types      []string            // the parts' content types, in order
}

// ParseDSN parses a DSN as sent (CRLF) or as a Maildir stores it (LF),
// and fails the test unless it is a multipart/report of delivery-status
// with its three parts in order, each group of fields well formed.
// The parts' text is returned with LF line ends.
func ParseDSN(t testing.TB, msg []byte) *DSN {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(strings.ReplaceAll(string(msg), "\r\n", "\n")))
	if err != nil {
		t.Fatalf("DSN is not a message: %v\n%s", err, msg)
	}
	d := &DSN{Header: m.Header}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part: %v\n%s", err, msg)
		}
		b, _ := io.ReadAll(p)
		body := strings.ReplaceAll(string(b), "\r\n", "\n")
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		d.Types = append(d.Types, ct)
		switch ct {
		case "text/plain":
			d.Human = body
		case "message/delivery-status", "message/global-delivery-status":
			d.PerMessage, d.Recipients = statusGroups(t, body)
		case "text/rfc822-headers", "message/rfc822", "message/global-headers", "message/global":
			d.Original = body
		}
	}
	want := []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}
	if len(d.Types) == 3 && d.Types[2] == "message/rfc822" { // RET=FULL
		want[2] = "message/rfc822"
	}
	if len(d.Types) > 1 && d.Types[1] == "message/global-delivery-status" { // RFC 6533 §6
		want = []string{"text/plain", "message/global-delivery-status", "message/global-headers"}
		if len(d.Types) == 3 && d.Types[2] == "message/global" {
			want[2] = "message/global"
		}
	}
	if !slices.Equal(d.Types, want) {
		t.Errorf("DSN parts %q, want %q", d.Types, want)
	}
	return d
}

// statusGroups reads the groups of fields of a message/delivery-status
// part (RFC 3464 §2.1): the per-message one, then one per recipient.
func statusGroups(t testing.TB, body string) (map[string]string, []map[string]string) {
	t.Helper()
	var groups []map[string]string
	for _, g := range strings.Split(strings.TrimSpace(body), "\n\n") {
		m := map[string]string{}
		for _, l := range strings.Split(g, "\n") {
			k, v, ok := strings.Cut(l, ": ")
			if !ok || m[k] != "" {
				t.Fatalf("delivery-status group %q: bad line %q", g, l)
			}
			m[k] = v
		}
		groups = append(groups, m)
	}
	if len(groups) < 2 {
		t.Fatalf("delivery-status has %d groups, want the per-message one and a recipient's", len(groups))
	}
	return groups[0], groups[1:]
}
