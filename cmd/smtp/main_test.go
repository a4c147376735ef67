package main

import (
	"reflect"
	"testing"

	"smtpfs/smtp"
)

// TestMailParams: -T asks REQUIRETLS of the message, -O an ORCPT for
// each recipient (rfc822, or utf-8 for a non-ASCII address), beside -N's
// NOTIFY; without them the envelope asks nothing.
func TestMailParams(t *testing.T) {
	rcpts := []string{"bob@example.org", "bé@example.org"}
	for _, tc := range []struct {
		args []string
		want smtp.Params
	}{
		{nil, smtp.Params{}},
		{[]string{"-T"}, smtp.Params{RequireTLS: true}},
		{[]string{"-O"}, smtp.Params{Rcpt: []smtp.RcptParams{{ORcpt: "rfc822;bob@example.org"}, {ORcpt: "utf-8;bé@example.org"}}}},
		{[]string{"-OT", "-N", "failure", "-E", "hdrs"}, smtp.Params{Ret: "HDRS", RequireTLS: true, Rcpt: []smtp.RcptParams{
			{Notify: "FAILURE", ORcpt: "rfc822;bob@example.org"}, {Notify: "FAILURE", ORcpt: "utf-8;bé@example.org"}}}},
	} {
		f, err := parse(append(tc.args, "example.org", "a@example.net", "bob"))
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got := f.mail("a@example.net", rcpts).Params; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: params %+v, want %+v", tc.args, got, tc.want)
		}
	}
}
