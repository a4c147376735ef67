package tlspolicy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// A Mode is what an MTA-STS policy asks of senders (RFC 8461 §5).
type Mode string

const (
	// ModeEnforce: deliver only to an MX that matches the policy, over TLS
	// with a certificate that verifies for the MX name (§5, §4.2).
	ModeEnforce Mode = "enforce"
	// ModeTesting: deliver as without a policy; failures are only reported.
	ModeTesting Mode = "testing"
	// ModeNone: the domain has withdrawn its policy (§8.3).
	ModeNone Mode = "none"
)

// Limits of MTA-STS.
const (
	maxPolicySize = 64 << 10 // body of the policy (RFC 8461 §3.3 suggests 64 KiB)
	maxMaxAge     = 31557600 // max_age, seconds (§3.2: about a year)
	maxIDLen      = 32       // id of the TXT record (§3.1: 1*32(ALPHA / DIGIT))
	maxKeyLen     = 32       // a key of the policy (§3.2: sts-policy-ext-name)
	fetchTimeout  = 30 * time.Second
)

// An STSPolicy is a parsed MTA-STS policy (RFC 8461 §3.2).
type STSPolicy struct {
	Mode   Mode
	MX     []string // patterns: a host name, or "*." and a domain; lower case
	MaxAge time.Duration
}

// ParsePolicy parses the text of a policy (RFC 8461 §3.2): "key: value"
// lines ending in LF or CRLF. version (STSv1), mode and max_age must be
// there, and an mx for every mode but none; unknown keys are ignored, and
// of a key other than mx given twice the first counts. max_age is 1 to 10
// digits and at most 31557600 (§3.2); an mx pattern is a domain name,
// possibly behind "*." (§4.1). Anything else is an error naming the line.
func ParsePolicy(text string) (*STSPolicy, error) {
	seen := map[string]string{}
	p := &STSPolicy{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, val, err := policyLine(line)
		if err != nil {
			return nil, fmt.Errorf("policy line %d: %v", i+1, err)
		}
		if key == "mx" {
			pat, err := mxPattern(val)
			if err != nil {
				return nil, fmt.Errorf("policy line %d: %v", i+1, err)
			}
			p.MX = append(p.MX, pat)
		} else if _, dup := seen[key]; !dup {
			seen[key] = val
		}
	}
	return p, p.fill(seen)
}

// policyLine splits one line into its key and value (§3.2: sts-policy-
// field, the value trimmed of white space).
func policyLine(line string) (key, val string, err error) {
	key, val, ok := strings.Cut(line, ":")
	if !ok {
		return "", "", fmt.Errorf("no colon in %q", clip(line))
	}
	if key == "" || len(key) > maxKeyLen || strings.IndexFunc(key, notKeyChar) >= 0 {
		return "", "", fmt.Errorf("invalid key %q", clip(key))
	}
	val = strings.Trim(val, " \t")
	if val == "" {
		return "", "", fmt.Errorf("%s has no value", key)
	}
	if strings.IndexFunc(val, func(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }) >= 0 {
		return "", "", fmt.Errorf("control character in the value of %s", key)
	}
	return key, val, nil
}

// notKeyChar reports a character that may not be in a key (§3.2: ALPHA,
// DIGIT, '_', '-', '.').
func notKeyChar(c rune) bool {
	return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.')
}

// fill checks and sets the fields other than mx.
func (p *STSPolicy) fill(kv map[string]string) error {
	switch v, ok := kv["version"]; {
	case !ok:
		return errors.New("policy has no version")
	case v != "STSv1":
		return fmt.Errorf("policy version %q is not STSv1", clip(v))
	}
	switch m := Mode(kv["mode"]); m {
	case ModeEnforce, ModeTesting, ModeNone:
		p.Mode = m
	case "":
		return errors.New("policy has no mode")
	default:
		return fmt.Errorf("policy mode %q is not enforce, testing or none", clip(string(m)))
	}
	age, err := parseMaxAge(kv["max_age"])
	if err != nil {
		return err
	}
	p.MaxAge = age
	if len(p.MX) == 0 && p.Mode != ModeNone {
		return fmt.Errorf("policy in mode %s has no mx", p.Mode)
	}
	return nil
}

// parseMaxAge parses max_age: 1*10DIGIT, at most maxMaxAge (§3.2).
func parseMaxAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("policy has no max_age")
	}
	if len(s) > 10 || strings.IndexFunc(s, func(c rune) bool { return c < '0' || c > '9' }) >= 0 {
		return 0, fmt.Errorf("policy max_age %q is not 1 to 10 digits", clip(s))
	}
	n, _ := strconv.ParseInt(s, 10, 64)
	if n > maxMaxAge {
		return 0, fmt.Errorf("policy max_age %d is above %d", n, maxMaxAge)
	}
	return time.Duration(n) * time.Second, nil
}

// mxPattern checks an mx pattern (§3.2, §4.1) and returns it in lower case.
func mxPattern(s string) (string, error) {
	name := strings.TrimPrefix(s, "*.")
	if n, ok := normalize(name); ok {
		return s[:len(s)-len(name)] + n, nil
	}
	return "", fmt.Errorf("invalid mx pattern %q", clip(s))
}

// Match reports whether host matches an mx pattern of the policy (§4.1):
// the same name, or for "*.example.org" a name with exactly one more
// label in front, not example.org itself. Case and a final dot do not
// count.
func (p *STSPolicy) Match(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if dom, ok := strings.CutPrefix(pat, "*."); ok {
			if label, rest, ok := strings.Cut(host, "."); ok && label != "" && rest == dom {
				return true
			}
		} else if host == pat {
			return true
		}
	}
	return false
}

// String returns the policy as text that ParsePolicy reads back.
func (p *STSPolicy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\nmode: %s\n", p.Mode)
	for _, mx := range p.MX {
		fmt.Fprintf(&b, "mx: %s\n", mx)
	}
	fmt.Fprintf(&b, "max_age: %d\n", int64(p.MaxAge/time.Second))
	return b.String()
}

// errNoSTS says a domain publishes no usable MTA-STS TXT record.
var errNoSTS = errors.New("no MTA-STS record")

// ParseTXT returns the id of the MTA-STS TXT record among the TXT records
// of _mta-sts.<domain> (RFC 8461 §3.1). Records that do not begin with
// "v=STSv1;" are not MTA-STS records; none, or more than one, or one that
// is malformed means the domain has no policy to be found through DNS.
func ParseTXT(records []string) (string, error) {
	var sts []string
	for _, r := range records {
		if strings.HasPrefix(r, "v=STSv1;") {
			sts = append(sts, r)
		}
	}
	switch len(sts) {
	case 0:
		return "", errNoSTS
	case 1:
	default:
		return "", fmt.Errorf("%w: %d TXT records begin with v=STSv1", errNoSTS, len(sts))
	}
	return txtID(sts[0])
}

// txtID reads "v=STSv1; id=...;" and extensions (§3.1).
func txtID(rec string) (string, error) {
	id := ""
	for _, f := range strings.Split(rec, ";")[1:] {
		f = strings.Trim(f, " \t")
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" || v == "" || strings.IndexFunc(k, notKeyChar) >= 0 {
			return "", fmt.Errorf("%w: malformed field %q", errNoSTS, clip(f))
		}
		if k == "id" && id == "" {
			id = v
		}
	}
	if id == "" || len(id) > maxIDLen || strings.IndexFunc(id, notAlnum) >= 0 {
		return "", fmt.Errorf("%w: id %q is not 1 to 32 letters and digits", errNoSTS, clip(id))
	}
	return id, nil
}

func notAlnum(c rune) bool {
	return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
}

// lookupSTS returns the id in the MTA-STS TXT record of domain; errNoSTS
// (wrapped) when there is none, a *dnsError when DNS failed.
func (e *Engine) lookupSTS(ctx context.Context, domain string) (string, error) {
	a, err := e.dns.query(ctx, "_mta-sts."+domain, dns.TypeTXT, false)
	if err != nil {
		return "", err
	}
	var recs []string
	for _, rr := range a.rrs {
		// One record may come as several strings (RFC 7208 §3.3 style).
		recs = append(recs, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return ParseTXT(recs)
}

// fetch gets the policy of domain over HTTPS (RFC 8461 §3.3): GET of
// https://mta-sts.<domain>/.well-known/mta-sts.txt with a certificate
// valid for that name, no redirect followed, status 200, media type
// text/plain, a body of at most 64 KiB.
func (e *Engine) fetch(ctx context.Context, domain string) (*STSPolicy, error) {
	host := "mta-sts." + domain
	if e.HTTPSPort != "" {
		host = net.JoinHostPort(host, e.HTTPSPort)
	}
	url := "https://" + host + "/.well-known/mta-sts.txt"
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := readPolicy(url, resp)
	if err != nil {
		return nil, err
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", url, err)
	}
	return p, nil
}

// readPolicy checks the response and reads its body.
func readPolicy(url string, resp *http.Response) (string, error) {
	if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 {
		return "", fmt.Errorf("%s: redirect to %q refused (RFC 8461 §3.3)", url, clip(loc))
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP status %s", url, resp.Status)
	}
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
		return "", fmt.Errorf("%s: media type %q is not text/plain", url, clip(ct))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicySize+1))
	if err != nil {
		return "", fmt.Errorf("%s: %v", url, err)
	}
	if len(body) > maxPolicySize {
		return "", fmt.Errorf("%s: policy larger than %d bytes", url, maxPolicySize)
	}
	return string(body), nil
}

// clip shortens a string from the network for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
