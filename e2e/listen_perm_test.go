package e2e

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// Listening under permission rules: a listener is told only of names its
// user may listen to, and when the chosen one may not, another one is
// told, on any instance.

const listenPermRules = `record:
  "prices/$currency":
    read: true
    listen: true
  "prices/secret/$name":
    read: true
    listen: "user.id == 'bob'"
`

// secretNames are enough names that the Store would give some of them to
// alice's listener first.
var secretNames = []string{"a", "b", "c", "d", "e", "f", "g", "h"}

// openAs opens a stream as sub with query, and returns it with its id.
func openAs(t *testing.T, base, sub, query string) (*sseClient, string) {
	t.Helper()
	token := strings.TrimPrefix(userToken(t, sub, nil)[1], "Bearer ")
	c := openSSE(t, base+"/stream?"+query+"&access_token="+url.QueryEscape(token), "")
	ready := c.Expect(t, "ready").Decode(t)
	return c, ready["stream"].(string)
}

// checkListenPerm: with alice's listener on aliceBase, bob's on bobBase and
// a subscriber on subBase, bob is told of every secret name and alice of
// none; prices/eur is told to exactly one of them.
func checkListenPerm(t *testing.T, aliceBase, bobBase, subBase string) {
	alice, _ := openAs(t, aliceBase, "alice", "listen=prices/*")
	bob, _ := openAs(t, bobBase, "bob", "listen=prices/*")
	time.Sleep(300 * time.Millisecond) // both listeners stored before the demand
	q := []string{}
	for _, n := range secretNames {
		q = append(q, "record=prices/secret/"+n)
	}
	sub, _ := openAs(t, subBase, "carol", strings.Join(q, "&"))
	defer sub.Close()
	seen := map[string]bool{}
	for range secretNames {
		m := nextListen(t, bob, 10*time.Second)
		if m.Kind != "record" || !m.Active || !strings.HasPrefix(m.Name, "prices/secret/") || seen[m.Name] {
			t.Fatalf("bob: listen frame %+v, want a new secret name active", m)
		}
		seen[m.Name] = true
	}
	quiet(t, alice, 300*time.Millisecond, "alice")
	quiet(t, bob, 0, "bob")

	eur, _ := openAs(t, subBase, "carol", "record=prices/eur")
	defer eur.Close()
	i, m := firstListen(t, 10*time.Second, alice, bob)
	if m != (listenMsg{Kind: "record", Name: "prices/eur", Active: true}) {
		t.Fatalf("listen frame %+v, want prices/eur active", m)
	}
	quiet(t, []*sseClient{bob, alice}[i], 300*time.Millisecond, "the other listener")
}

func TestListenPermOneInstance(t *testing.T) {
	env := rulesEnv(writeRules(t, listenPermRules))
	for k, v := range listenEnv {
		env[k] = v
	}
	srv := startServer(t, env)
	checkListenPerm(t, srv.URL, srv.URL, srv.URL)
}

func TestListenPermTwoInstancesPG(t *testing.T) {
	env := rulesEnv(writeRules(t, listenPermRules))
	for k, v := range listenEnv {
		env[k] = v
	}
	_, srv := pgServers(t, 2, env)
	checkListenPerm(t, srv[0].URL, srv[1].URL, srv[0].URL)
}
