package conf

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// checkGreyStore checks a greystore value: file, or a Redis URL,
// redis://[user:password@]host[:port][/db] or rediss:// for TLS, with a
// port from 1 to 65535 and a database number, and nothing else (no
// query, no fragment). Errors never show the password.
func checkGreyStore(s string) (string, error) {
	if strings.EqualFold(s, "file") {
		return "file", nil
	}
	u, err := url.Parse(s)
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("greystore takes file, or a redis:// or rediss:// URL, not %s: %s", quote(Redact(s)), why)
	}
	switch {
	case err != nil:
		return bad("not a URL")
	case u.Scheme != "redis" && u.Scheme != "rediss":
		return bad("the scheme must be redis or rediss")
	case u.Opaque != "" || u.Hostname() == "":
		return bad("no host")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return bad("no query or fragment is taken")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad("bad port")
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 || n > 1<<20 {
			return bad("the path is a database number")
		}
	}
	return s, nil
}

// checkExportFile checks the file exportwhitelist writes: an absolute
// path, if given.
func checkExportFile(a []string) error {
	if len(a) > 0 && !filepath.IsAbs(a[0]) {
		return fmt.Errorf("exportwhitelist takes an absolute path, not %s", quote(a[0]))
	}
	return nil
}

func setGreyFail(c *Config, a []string) error {
	switch strings.ToLower(a[0]) {
	case "open":
		c.GreyFailClosed = false
	case "closed":
		c.GreyFailClosed = true
	default:
		return fmt.Errorf("greyfail takes open or closed, not %s", quote(a[0]))
	}
	return nil
}

// urlPassword is the password of a URL in text (redis://user:password@).
var urlPassword = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^:@/\s]*:)[^@/]*@`)

// Redact returns text with the password of every URL in it shown as
// xxxxx, for errors and logs: a greystore line is shown whole only by
// reading ctl, which is its owner's alone, and in smtpd.conf itself.
func Redact(text string) string {
	return urlPassword.ReplaceAllString(text, "${1}xxxxx@")
}
