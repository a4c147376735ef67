package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIM signing (RFC 6376 §5) with go-msgauth: relaxed/relaxed
// canonicalization (§3.4), one signature per key chosen for the domain,
// so rsa-sha256 and ed25519-sha256 together when both are (RFC 8463 §5
// suggests both while verifiers learn Ed25519). The signing domain is the
// From domain, or the nearest parent up to its organizational domain that
// has keys chosen: d= must align with From for DMARC (RFC 7489 §3.1.1).
// The fields signed are those of signedFields that the message has, each
// as many times as it appears, and From once more, so that a From added
// later breaks the signature (§5.4.2, "oversigning").

// signedFields are the fields a signature covers when present (RFC 6376
// §5.4.1), and every field whose name starts with "List-".
var signedFields = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding",
}

// A Signer signs outgoing mail with the keys of a KeyStore.
type Signer struct {
	Keys *KeyStore
}

// ErrNoFromDomain is returned by Sign for a message without exactly one
// From domain: there is no domain to sign for.
var ErrNoFromDomain = errors.New("dkim: no single From domain to sign for")

// Sign reads a message and returns the DKIM-Signature fields to put on
// top of it, each ending in CRLF; nil when no key signs for its From
// domain.
func (s *Signer) Sign(msg io.Reader) ([]byte, error) {
	br := bufio.NewReaderSize(msg, 64<<10)
	head, err := readHeader(br)
	if err != nil {
		return nil, fmt.Errorf("dkim: %v", err)
	}
	fields := splitHeader(head)
	domains, froms := authorDomains(fields)
	if len(domains) != 1 || froms != 1 {
		return nil, ErrNoFromDomain
	}
	keys := s.keysFor(domains[0])
	if len(keys) == 0 {
		return nil, nil
	}
	signers, err := newSigners(keys, headerKeys(fields))
	if err != nil {
		return nil, err
	}
	writers := make([]io.Writer, len(signers))
	for i, sg := range signers {
		writers[i] = sg
	}
	w := io.MultiWriter(writers...)
	_, err = w.Write(terminated(head))
	if err == nil {
		_, err = io.Copy(w, br)
	}
	if cerr := closeAll(signers); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: signing: %v", err)
	}
	var out bytes.Buffer
	for _, sg := range signers {
		out.WriteString(sg.Signature())
	}
	return out.Bytes(), nil
}

// newSigners starts a go-msgauth signer for each key.
func newSigners(keys []*Key, names []string) ([]*dkim.Signer, error) {
	signers := make([]*dkim.Signer, 0, len(keys))
	for _, k := range keys {
		sg, err := dkim.NewSigner(&dkim.SignOptions{
			Domain: k.Domain, Selector: k.Selector, Signer: k.Signer,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             names,
		})
		if err != nil {
			closeAll(signers)
			return nil, err
		}
		signers = append(signers, sg)
	}
	return signers, nil
}

// closeAll closes every signer and returns the first error.
func closeAll(signers []*dkim.Signer) error {
	var first error
	for _, sg := range signers {
		if err := sg.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// keysFor returns the keys chosen for domain, or for its nearest parent
// that has some, up to the organizational domain.
func (s *Signer) keysFor(domain string) []*Key {
	org := orgDomain(domain)
	for d := domain; ; {
		if keys := s.Keys.Signing(d); len(keys) > 0 {
			return keys
		}
		i := strings.IndexByte(d, '.')
		if d == org || i < 0 {
			return nil
		}
		d = d[i+1:]
	}
}

// headerKeys lists the fields to sign (h=): each of signedFields and the
// List-* fields as often as the message has it, then From once more.
func headerKeys(fields []field) []string {
	count := map[string]int{}
	var lists []string
	for _, f := range fields {
		name := strings.ToLower(f.name)
		if count[name] == 0 && strings.HasPrefix(name, "list-") {
			lists = append(lists, f.name)
		}
		count[name]++
	}
	var keys []string
	for _, name := range slices.Concat(signedFields, lists) {
		for range count[strings.ToLower(name)] {
			keys = append(keys, name)
		}
	}
	return append(keys, "From")
}
