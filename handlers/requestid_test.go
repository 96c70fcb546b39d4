package handlers

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRequestID: a sane incoming X-Request-Id is kept; anything else (too
// long, a character that could forge a log line or a header, empty) is
// replaced by a new random id, itself sane.
func TestRequestID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		keep bool
	}{
		{"abc", true},
		{"0b6f3c1e-6a0e-4f9b-9a1e-3b5f3f6f2a11", true},
		{"105445aa7843bc8bf206b12000100000/1;o=1", false},
		{"105445aa7843bc8bf206b12000100000/1", true},
		{"dGVzdA==+/@:._-", true},
		{strings.Repeat("a", maxRequestID), true},
		{strings.Repeat("a", maxRequestID+1), false},
		{"", false},
		{"a b", false},
		{"a\nlevel=ERROR", false},
		{`a"b`, false},
		{"é", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.in != "" {
			r.Header.Set(RequestIDHeader, tc.in)
		}
		got := requestID(r)
		if tc.keep != (got == tc.in) {
			t.Errorf("requestID(%q) = %q; want kept: %v", tc.in, got, tc.keep)
		}
		if !saneRequestID(got) {
			t.Errorf("requestID(%q) = %q, which is not sane", tc.in, got)
		}
	}
	if a, b := newRequestID(), newRequestID(); a == b || len(a) != 16 {
		t.Errorf("newRequestID: %q and %q, want two different 16-character ids", a, b)
	}
}
