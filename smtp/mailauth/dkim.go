package mailauth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"smtpfs/internal/errquote"
)

// DKIM verification, RFC 6376 §6 with RSA (rsa-sha256; rsa-sha1 is
// refused, RFC 8301 §3.1, as are RSA keys under 1024 bits, §3.2) and
// Ed25519 (ed25519-sha256, RFC 8463), by go-msgauth's dkim package with its
// key lookups sent to our Resolver. The first MaxSignatures signatures (5
// by default) are verified, at once; as many more are reported neutral,
// unverified (RFC 6376 §6.1 lets a verifier limit its work), and the rest
// are not reported. The key
// lookups of a message end after DKIMTimeout; the hashing reads the
// message once, and the message is bounded by whoever hands it over. A
// signature with l= (a body length) is reported as policy: it leaves the
// rest of the body unsigned, and go-msgauth does not accept it.

// A DKIMResult is the verification of one DKIM-Signature field.
type DKIMResult struct {
	Result    Result // pass, fail, policy, neutral, temperror or permerror; none for a message without a signature
	Domain    string // d=, the signing domain
	Selector  string // s=
	Identity  string // i=, if given
	Algorithm string // a=
	Signature string // b=, without white space, for header.b (RFC 6008)
	Reason    string // why it did not pass

	bodyLength bool // l= is present
}

// String renders the result in one log line.
func (r DKIMResult) String() string {
	if r.Result == None {
		return "dkim=none"
	}
	s := fmt.Sprintf("dkim=%s d=%s s=%s a=%s b=%s", r.Result, errquote.Quote(r.Domain), errquote.Quote(r.Selector), errquote.Quote(r.Algorithm), errquote.Quote(shortB(r.Signature, 8)))
	if r.Reason != "" {
		s += " reason=" + errquote.Quote(r.Reason)
	}
	return s
}

func (c *Checker) maxSignatures() int {
	if c.MaxSignatures > 0 {
		return c.MaxSignatures
	}
	return 5
}

func (c *Checker) dkimTimeout() time.Duration {
	if c.DKIMTimeout > 0 {
		return c.DKIMTimeout
	}
	return 20 * time.Second
}

// The message is read through a pooled 64 KiB reader, and up to inMemory
// of it is handed to go-msgauth whole in a pooled buffer: a reader it can
// write out without buffers of its own (bytes.Buffer's WriteTo), where a
// MultiReader of header and body cost 32 KiB more a message. Their
// allocations were half of a message's checks' (BenchmarkCheck). A
// larger message streams past inMemory, so that many large messages
// checked at once hold 256 KiB each, not their size.
const inMemory = 256 << 10

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}
	bodies  = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// VerifyDKIM verifies the DKIM signatures of a message (header and body,
// as received), one result per DKIM-Signature field in the order of the
// header; a message without any gets one result, none.
func (c *Checker) VerifyDKIM(ctx context.Context, msg io.Reader) []DKIMResult {
	br := readers.Get().(*bufio.Reader)
	br.Reset(msg)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	head, herr := readHeader(br)
	var results []DKIMResult
	for _, f := range splitHeader(head) {
		if f.is("DKIM-Signature") {
			results = append(results, sigTags(f.value()))
		}
	}
	if len(results) == 0 {
		return []DKIMResult{{Result: None, Reason: "no signature"}}
	}
	if herr != nil {
		return failAll(results, PermError, herr.Error())
	}
	n := min(len(results), c.maxSignatures())
	results = results[:min(len(results), 2*n)]
	for i := n; i < len(results); i++ {
		results[i].Result = Neutral
		results[i].Reason = fmt.Sprintf("not verified: only the first %d signatures are", n)
	}
	ctx, cancel := context.WithTimeout(ctx, c.dkimTimeout())
	defer cancel()
	opts := &dkim.VerifyOptions{LookupTXT: c.keyLookup(ctx), MaxVerifications: n}
	whole := bodies.Get().(*bytes.Buffer)
	defer func() {
		if whole.Cap() <= 2*inMemory {
			whole.Reset()
			bodies.Put(whole)
		}
	}()
	whole.Reset()
	whole.Write(terminated(head))
	var all io.Reader = whole
	switch _, err := io.CopyN(whole, br, inMemory); {
	case err == nil:
		all = io.MultiReader(whole, br) // more than inMemory: the rest streams
	case err != io.EOF:
		return failAll(results, TempError, fmt.Sprint("reading the message: ", err))
	}
	verifs, err := dkim.VerifyWithOptions(all, opts)
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) || len(verifs) != n {
		// The message could not be read: no verdict is worth anything.
		return failAll(results, TempError, fmt.Sprint("reading the message: ", err))
	}
	for i, v := range verifs {
		results[i].Result, results[i].Reason = verdict(v.Err, results[i])
	}
	return results
}

// failAll gives every result the same outcome.
func failAll(results []DKIMResult, r Result, reason string) []DKIMResult {
	for i := range results {
		results[i].Result, results[i].Reason = r, reason
	}
	return results
}

// verdict maps go-msgauth's error for one signature to a result.
func verdict(err error, r DKIMResult) (Result, string) {
	switch {
	case err == nil:
		return Pass, ""
	case dkim.IsTempFail(err):
		return TempError, err.Error()
	case dkim.IsPermFail(err):
		return PermError, err.Error()
	case r.bodyLength:
		return Policy, "l= leaves part of the body unsigned (RFC 6376 §8.2)"
	}
	return Fail, err.Error()
}

// sigTags takes the tags a result reports from a DKIM-Signature value
// (RFC 6376 §3.2, §3.5).
func sigTags(v string) DKIMResult {
	var r DKIMResult
	for _, t := range strings.Split(v, ";") {
		name, val, _ := strings.Cut(t, "=")
		val = strings.Join(strings.Fields(val), "")
		switch strings.TrimSpace(name) {
		case "d":
			r.Domain = strings.ToLower(val)
		case "s":
			r.Selector = val
		case "i":
			r.Identity = val
		case "a":
			r.Algorithm = strings.ToLower(val)
		case "b":
			r.Signature = val
		case "l":
			r.bodyLength = true
		}
	}
	return r
}

// keyLookup is go-msgauth's LookupTXT: our Resolver, its failures in the
// shape go-msgauth tells apart (a temporary net.Error, RFC 6376 §6.1.2).
func (c *Checker) keyLookup(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		txts, a, err := c.Resolver.LookupTXT(ctx, name)
		switch {
		case err != nil:
			return nil, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
		case a.NotFound:
			return nil, &net.DNSError{Err: "no such domain", Name: name, IsNotFound: true}
		}
		return txts, nil
	}
}

// shortB returns the first n characters of a signature.
func shortB(b string, n int) string {
	if len(b) > n {
		return b[:n]
	}
	return b
}
