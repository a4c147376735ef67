package queue

import (
	"errors"
	"fmt"
	"testing"

	"smtpfs/smtp"
)

// TestStatusOf: the Status and Diagnostic-Code fields of a DSN.
func TestStatusOf(t *testing.T) {
	nx := &smtp.DNSError{Name: "gone.example", Type: "MX", NotFound: true}
	servfail := &smtp.DNSError{Name: "broken.example", Type: "MX", Err: "SERVFAIL"}
	tests := []struct {
		name         string
		err          error
		expired      bool
		status, diag string
	}{
		{"reply", noSuchUser, false, "5.1.1", "smtp; 550 5.1.1 no such user"},
		{"wrapped reply", fmt.Errorf("mx.example rcptto: %w", noSuchUser), false, "5.1.1", "smtp; 550 5.1.1 no such user"},
		{"reply without enhanced code", smtp.Replyf(554, "", "go away"), false, "5.0.0", "smtp; 554 go away"},
		{"no such domain", fmt.Errorf("lookup: %w", nx), false, "5.1.2", "X-smtpfs; lookup: dns: gone.example: domain not found"},
		{"dns trouble", servfail, true, "4.4.7", "X-smtpfs; dns: broken.example MX: SERVFAIL"},
		{"dns trouble, not expired", servfail, false, "4.4.3", "X-smtpfs; dns: broken.example MX: SERVFAIL"},
		{"other", errors.New("connection refused"), false, "4.0.0", "X-smtpfs; connection refused"},
		{"expired reply", greylisted, true, "4.4.7", "smtp; 451 4.7.1 greylisted, try again"},
		{"our own, with a code", fmt.Errorf("mx.example mailfrom: %w", &smtp.StatusError{Enh: "5.6.7", Msg: "no SMTPUTF8"}), false, "5.6.7", "X-smtpfs; mx.example mailfrom: 5.6.7 no SMTPUTF8"},
	}
	for _, tt := range tests {
		status, diag := statusOf(tt.err, tt.expired)
		if status != tt.status || diag != tt.diag {
			t.Errorf("%s: %q, %q; want %q, %q", tt.name, status, diag, tt.status, tt.diag)
		}
	}
}
