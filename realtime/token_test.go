package realtime

import (
	"strconv"
	"testing"
)

func TestParseToken(t *testing.T) {
	id := newStreamID()
	for _, tt := range []struct {
		tok string
		ok  bool
		pos int64
	}{
		{id + "-0", true, 0},
		{id + "-42", true, 42},
		{"abcdefghijklmnop-7", true, 7},
		{id, false, 0},
		{id + "-", false, 0},
		{id + "-x", false, 0},
		{id + "--1", false, 0},
		{"-1", false, 0},
		{"nope-1", false, 0},
		{"ABCDEFGHIJKLMNOP-1", false, 0},         // upper case: not an id of ours
		{"abcdefghijklmno1-1", false, 0},         // 1 is not base32
		{"abcdefghijklmno\xff-1", false, 0},      // not text: a database would refuse it
		{"abcdefghijklmno\x00-1", false, 0},      // nor NUL
		{"abcdefghijklmnopq-1", false, 0},        // 17 characters
		{id + "-99999999999999999999", false, 0}, // past int64
	} {
		got, pos, ok := ParseToken(tt.tok)
		if ok != tt.ok || ok && (pos != tt.pos || got+"-"+strconv.FormatInt(pos, 10) != tt.tok) {
			t.Errorf("ParseToken(%q) = %q, %d, %v; want ok %v, position %d", tt.tok, got, pos, ok, tt.ok, tt.pos)
		}
	}
}

// FuzzParseToken: a token that parses is an id of newStreamID's form and
// a position, which give the token back.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{newStreamID() + "-1", "a-1", "-", "\xff-1", "abcdefghijklmnop-0007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, pos, ok := ParseToken(tok)
		if !ok {
			return
		}
		if !isStreamID(id) || pos < 0 {
			t.Fatalf("ParseToken(%q) = %q, %d", tok, id, pos)
		}
		if back := id + "-" + strconv.FormatInt(pos, 10); back != tok && len(back) >= len(tok) {
			t.Fatalf("ParseToken(%q) = %q, %d: gives back %q", tok, id, pos, back)
		}
	})
}
