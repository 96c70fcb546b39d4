package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The permission tests run real servers in token mode over a real rules
// file, and act as users with tokens whose data claim the rules read.

// auctionRules is the example of API.md's Permissions, and a chat, an RPC
// and presence beside it.
const auctionRules = `record:
  "auction/item/$sellerId/$itemId":
    read: true
    create: "user.id == $sellerId"
    write: "user.data.canBid && data.price > oldData.price"
    delete: "user.id == $sellerId"
event:
  "chat/$room":
    publish: "user.id != '' && !(data.text.contains('spam'))"
    subscribe: true
rpc:
  "add-two":
    provide: "user.data.role == 'backend'"
    request: "data.x < 100"
presence:
  "*":
    read: true
`

// writeRules writes a rules file in a temporary directory and returns its path.
func writeRules(t testing.TB, src string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// rulesEnv is the configuration of a token-mode server with the rules file.
func rulesEnv(file string) map[string]string {
	return map[string]string{"AUTH_MODE": "token", "JWT_SECRET": authSecret, "PERMISSIONS_FILE": file}
}

// startRulesServer starts a token-mode server over the rules src.
func startRulesServer(t testing.TB, src string) *testServer {
	t.Helper()
	return startServer(t, rulesEnv(writeRules(t, src)))
}

// user is a caller: the headers of its token.
type user []string

// userToken signs a token for sub whose data claim is data.
func userToken(t testing.TB, sub string, data map[string]any) user {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "data": data,
	}).SignedString([]byte(authSecret))
	if err != nil {
		t.Fatal(err)
	}
	return user{"Authorization", "Bearer " + s}
}

// send sends a request as u and returns the status and body.
func (u user) send(t testing.TB, method, url, contentType, body string, headers ...string) (int, []byte) {
	t.Helper()
	st, _, b := do(t, method, url, contentType, body, append(append([]string{}, u...), headers...)...)
	return st, b
}

// wantStatus checks a status, and for a 403 the problem's code and that
// its detail names the name.
func wantStatus(t testing.TB, what string, st int, b []byte, want int, name string) {
	t.Helper()
	if st != want {
		t.Errorf("%s: %d %s, want %d", what, st, b, want)
		return
	}
	if want == http.StatusForbidden {
		var p struct{ Code, Detail string }
		if json.Unmarshal(b, &p); p.Code != "PERMISSION_DENIED" || !strings.Contains(p.Detail, name) {
			t.Errorf("%s: %s, want a PERMISSION_DENIED problem naming %q", what, b, name)
		}
	}
}

// wantRecordData GETs a record as u and checks its version and data.
func wantRecordData(t testing.TB, base string, u user, name string, version float64, data string) {
	t.Helper()
	st, b := u.send(t, http.MethodGet, base+"/records/"+name, "", "")
	var got struct {
		Version float64
		Data    json.RawMessage
	}
	if st != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Version != version || !jsonEqual(got.Data, []byte(data)) {
		t.Errorf("GET %s: %d %s, want version %v and data %s", name, st, b, version, data)
	}
}

// TestPermAuction is API.md's auction end to end: the seller creates, a
// bidder with canBid raises the price by every kind of write (each checked
// against the whole new record), a lower bid and a bidder without canBid
// are refused and change nothing, and only the seller deletes.
func TestPermAuction(t *testing.T) {
	srv := startRulesServer(t, auctionRules)
	base, item := srv.URL, "auction/item/sam/lamp"
	sam := userToken(t, "sam", nil)
	bea := userToken(t, "bea", map[string]any{"canBid": true})
	bob := userToken(t, "bob", map[string]any{"canBid": false})
	url := base + "/records/" + item

	st, b := bob.send(t, "PUT", base+"/records/auction/item/sam/fake", "application/json", `{"price":1}`)
	wantStatus(t, "bob creates an item of sam's", st, b, 403, "auction/item/sam/fake")
	st, b = sam.send(t, "PUT", url, "application/json", `{"price":10,"note":"brass"}`)
	wantStatus(t, "sam creates his item", st, b, 201, item)
	st, b = sam.send(t, "PUT", url, "application/json", `{"price":1,"note":"brass"}`)
	wantStatus(t, "sam lowers the price (a write, not a create)", st, b, 403, item)

	steps := []struct {
		who                        string
		u                          user
		method, query, ctype, body string
		want                       int
	}{
		{"bea bids 12", bea, "PUT", "", "application/json", `{"price":12,"note":"brass"}`, 200},
		{"bob (no canBid) bids 20", bob, "PUT", "", "application/json", `{"price":20,"note":"brass"}`, 403},
		{"bea bids 11", bea, "PUT", "", "application/json", `{"price":11,"note":"brass"}`, 403},
		{"bea bids 15 at a path", bea, "PUT", "?path=price", "application/json", `15`, 200},
		{"bea bids 14 at a path", bea, "PUT", "?path=price", "application/json", `14`, 403},
		{"bea changes the note only", bea, "PUT", "?path=note", "application/json", `"gold"`, 403},
		{"bea bids 16 by merge patch", bea, "PATCH", "", "application/merge-patch+json", `{"price":16}`, 200},
		{"bea bids 2 by merge patch", bea, "PATCH", "", "application/merge-patch+json", `{"price":2}`, 403},
		{"bea bids 17 by JSON Patch", bea, "PATCH", "", "application/json-patch+json", `[{"op":"replace","path":"/price","value":17}]`, 200},
		{"bea bids 3 by JSON Patch", bea, "PATCH", "", "application/json-patch+json", `[{"op":"replace","path":"/price","value":3}]`, 403},
		{"bea removes the note", bea, "DELETE", "?path=note", "", "", 403},
	}
	version := 1.0
	for _, s := range steps {
		st, b := s.u.send(t, s.method, url+s.query, s.ctype, s.body)
		wantStatus(t, s.who, st, b, s.want, item)
		if st == 200 {
			version++
		}
		if strings.Contains(string(b), "brass") && st == 403 {
			t.Errorf("%s: the refusal shows the data: %s", s.who, b)
		}
	}
	wantRecordData(t, base, bob, item, version, `{"price":17,"note":"brass"}`)

	st, b = bea.send(t, "DELETE", url, "", "")
	wantStatus(t, "bea deletes sam's item", st, b, 403, item)
	st, b = bea.send(t, "DELETE", base+"/records/auction/item/sam/gone", "", "")
	wantStatus(t, "bea deletes a missing item of sam's", st, b, 403, "auction/item/sam/gone")
	wantRecordData(t, base, bob, item, version, `{"price":17,"note":"brass"}`)
	st, b = sam.send(t, "DELETE", url, "", "")
	wantStatus(t, "sam deletes his item", st, b, 204, item)
	st, b = sam.send(t, "DELETE", base+"/records/auction/item/sam/gone", "", "")
	wantStatus(t, "sam deletes a missing item of his", st, b, 404, "")
	st, b = bob.send(t, "GET", url, "", "")
	wantStatus(t, "GET after the delete", st, b, 404, "")
}

// TestPermBatch: a batch stops at its first refused op, with that op's
// index, and writes nothing; each op is decided on the record as the
// batch's earlier ops left it.
func TestPermBatch(t *testing.T) {
	srv := startRulesServer(t, auctionRules)
	sam := userToken(t, "sam", nil)
	bea := userToken(t, "bea", map[string]any{"canBid": true})
	put := func(u user, name, body string) {
		st, b := u.send(t, "PUT", srv.URL+"/records/"+name, "application/json", body)
		if st != 201 {
			t.Fatalf("PUT %s: %d %s", name, st, b)
		}
	}
	put(sam, "auction/item/sam/a", `{"price":10}`)
	put(sam, "auction/item/sam/b", `{"price":10}`)

	// 12 then 11 on one record: the second op sees 12 as oldData.
	st, b := bea.send(t, "POST", srv.URL+"/batch", "application/json", `{"ops":[
		{"op":"put","name":"auction/item/sam/a","data":{"price":12}},
		{"op":"patch","name":"auction/item/sam/b","patch":{"price":20}},
		{"op":"put","name":"auction/item/sam/a","data":{"price":11}},
		{"op":"put","name":"auction/item/sam/b","data":{"price":30}}]}`)
	var p struct {
		Code  string
		Index *int
	}
	if json.Unmarshal(b, &p); st != 403 || p.Code != "PERMISSION_DENIED" || p.Index == nil || *p.Index != 2 {
		t.Errorf("batch refused at op 2: %d %s, want 403 PERMISSION_DENIED with index 2", st, b)
	}
	wantRecordData(t, srv.URL, bea, "auction/item/sam/a", 1, `{"price":10}`)
	wantRecordData(t, srv.URL, bea, "auction/item/sam/b", 1, `{"price":10}`)

	// A delete in a batch is decided on the record as it is.
	st, b = sam.send(t, "POST", srv.URL+"/batch", "application/json", `{"ops":[
		{"op":"put","name":"auction/item/sam/c","data":{"price":1}},
		{"op":"delete","name":"auction/item/sam/a"},
		{"op":"delete","name":"auction/item/bea/x"}]}`)
	if json.Unmarshal(b, &p); st != 403 || p.Index == nil || *p.Index != 2 {
		t.Errorf("batch refused at its delete, op 2: %d %s", st, b)
	}
	wantRecordData(t, srv.URL, bea, "auction/item/sam/a", 1, `{"price":10}`)
	if st, b := bea.send(t, "GET", srv.URL+"/records/auction/item/sam/c", "", ""); st != 404 {
		t.Errorf("the refused batch's first op was written: %d %s", st, b)
	}
}

// TestPermReads: a read refused is 403 whether or not the record exists
// (GET, a path read, HEAD), and a listing shows only the names the user
// may read, by a rule on the name and by a rule on the data.
func TestPermReads(t *testing.T) {
	srv := startRulesServer(t, `record:
  "*":
    create: true
    write: true
  "secret/*":
    read: false
  "public/*":
    read: true
  "docs/$owner/*":
    read: "user.id == $owner || data.shared == true"
`)
	ann := userToken(t, "ann", nil)
	bo := userToken(t, "bo", nil)
	for _, r := range []struct{ name, data string }{
		{"secret/a", `{"x":1}`}, {"public/a", `{"x":1}`}, {"public/b", `{"x":1}`},
		{"docs/ann/1", `{"shared":false}`}, {"docs/ann/2", `{"shared":true}`}, {"docs/ann/3", `{}`},
		{"docs/bo/1", `{"shared":false}`}, {"other", `1`},
	} {
		if st, b := ann.send(t, "PUT", srv.URL+"/records/"+r.name, "application/json", r.data); st != 201 {
			t.Fatalf("PUT %s: %d %s", r.name, st, b)
		}
	}
	for _, c := range []struct {
		u            user
		method, name string
		want         int
	}{
		{ann, "GET", "secret/a", 403},
		{ann, "GET", "secret/missing", 403},
		{ann, "GET", "secret/a?path=x", 403},
		{ann, "HEAD", "secret/a", 403},
		{ann, "HEAD", "secret/missing", 403},
		{ann, "GET", "other", 403}, // no read rule matches
		{ann, "GET", "public/a", 200},
		{ann, "GET", "public/missing", 404},
		{ann, "GET", "docs/ann/1", 200},
		{bo, "GET", "docs/ann/1", 403},
		{bo, "GET", "docs/ann/2", 200},
		{bo, "GET", "docs/ann/2?path=shared", 200},
		{bo, "GET", "docs/ann/missing", 403},
	} {
		st, b := c.u.send(t, c.method, srv.URL+"/records/"+c.name, "", "")
		name, _, _ := strings.Cut(c.name, "?")
		if c.method == "HEAD" {
			if st != c.want {
				t.Errorf("HEAD %s: %d, want %d", c.name, st, c.want)
			}
			continue
		}
		wantStatus(t, c.method+" "+c.name, st, b, c.want, name)
	}

	list := func(u user, query string) (names []string, next *string) {
		t.Helper()
		st, b := u.send(t, "GET", srv.URL+"/records?"+query, "", "")
		var out struct {
			Records []struct{ Name string }
			Next    *string
		}
		if st != 200 || json.Unmarshal(b, &out) != nil {
			t.Fatalf("GET /records?%s: %d %s", query, st, b)
		}
		for _, r := range out.Records {
			names = append(names, r.Name)
		}
		return names, out.Next
	}
	if got, next := list(bo, ""); strings.Join(got, " ") != "docs/ann/2 docs/bo/1 public/a public/b" || next != nil {
		t.Errorf("bo's listing: %q next %v", got, next)
	}
	if got, _ := list(ann, "prefix=docs/"); strings.Join(got, " ") != "docs/ann/1 docs/ann/2 docs/ann/3" {
		t.Errorf("ann's listing of docs/: %q", got)
	}
	// Pages of one: the cursor moves past the names left out.
	var pages []string
	after := ""
	for range 10 {
		got, next := list(bo, "limit=1&after="+after)
		pages = append(pages, got...)
		if next == nil {
			break
		}
		after = *next
	}
	if strings.Join(pages, " ") != "docs/ann/2 docs/bo/1 public/a public/b" {
		t.Errorf("bo's listing by pages of one: %q", pages)
	}
}

// TestPermEventsAndRPC: publishing is decided on the payload; providing
// on the provider's user, per name; requesting on the input.
func TestPermEventsAndRPC(t *testing.T) {
	srv := startRulesServer(t, auctionRules)
	ann := userToken(t, "ann", nil)
	backend := userToken(t, "svc", map[string]any{"role": "backend"})
	for _, c := range []struct {
		u          user
		name, body string
		want       int
	}{
		{ann, "chat/lobby", `{"text":"hello"}`, 202},
		{ann, "chat/lobby", `{"text":"buy spam"}`, 403},
		{ann, "chat/a/b", `{"text":"hello"}`, 403}, // no pattern matches two segments
		{ann, "news", `{"text":"hello"}`, 403},
	} {
		st, b := c.u.send(t, "POST", srv.URL+"/events/"+c.name, "application/json", c.body)
		wantStatus(t, "publish "+c.name+" "+c.body, st, b, c.want, c.name)
	}

	st, b := ann.send(t, "GET", srv.URL+"/rpc-requests?name=add-two&wait=0s", "", "")
	wantStatus(t, "ann provides add-two", st, b, 403, "add-two")
	st, b = backend.send(t, "GET", srv.URL+"/rpc-requests?name=add-two&name=other&wait=0s", "", "")
	wantStatus(t, "svc provides add-two and other", st, b, 403, "other")
	st, b = ann.send(t, "POST", srv.URL+"/rpc/add-two", "application/json", `{"x":100}`)
	wantStatus(t, "request with x=100", st, b, 403, "add-two")

	done := make(chan struct{})
	go func() {
		defer close(done)
		st, b := backend.send(t, "GET", srv.URL+"/rpc-requests?name=add-two&wait=10s", "", "")
		var out struct{ Requests []rpcRequest }
		if st != 200 || json.Unmarshal(b, &out) != nil || len(out.Requests) != 1 {
			t.Errorf("svc's poll: %d %s", st, b)
			return
		}
		if st, b := backend.send(t, "POST", srv.URL+"/rpc-requests/"+out.Requests[0].ID, "application/json", `{"data":3}`); st != 204 {
			t.Errorf("answer: %d %s", st, b)
		}
	}()
	// The provider registers with its poll: call until it is there.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, b = ann.send(t, "POST", srv.URL+"/rpc/add-two?timeout=5s", "application/json", `{"x":1}`)
		if st != 503 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st != 200 || !jsonEqual(b, []byte(`{"data":3}`)) {
		t.Errorf("request with x=1: %d %s", st, b)
	}
	<-done
}

// TestPermPresence: GET /presence leaves out the users whose presence the
// caller may not read, and refuses a user named that it may not read.
func TestPermPresence(t *testing.T) {
	srv := startRulesServer(t, `presence:
  "*":
    read: "user.id != 'guest'"
  "ghost":
    read: false
`)
	for _, id := range []string{"ann", "ghost"} {
		c := openSSE(t, srv.URL+"/stream?access_token="+strings.TrimPrefix(userToken(t, id, nil)[1], "Bearer "), "")
		c.Expect(t, "ready")
		t.Cleanup(c.Close)
	}
	ann := userToken(t, "ann", nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, b := ann.send(t, "GET", srv.URL+"/presence", "", "")
		if st == 200 && jsonEqual(b, []byte(`{"users":["ann"]}`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /presence: %d %s, want only ann (ghost's presence is not readable)", st, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, b := ann.send(t, "GET", srv.URL+"/presence?user=ghost", "", "")
	wantStatus(t, "presence of ghost", st, b, 403, "ghost")
	st, b = userToken(t, "guest", nil).send(t, "GET", srv.URL+"/presence", "", "")
	if st != 200 || !jsonEqual(b, []byte(`{"users":[]}`)) {
		t.Errorf("guest's GET /presence: %d %s, want no users", st, b)
	}
}
