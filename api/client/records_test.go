package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/api/client"
)

// TestRecords drives every record write of the client against a real
// server and checks each answer's version and data.
func TestRecords(t *testing.T) {
	ctx := context.Background()
	c := client.NewClient(serverURL, client.WithToken(""))
	name := "t-records/" + t.Name()
	check := func(r *client.Record, err error, version int64, data string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != version || string(r.Data) != data {
			t.Fatalf("got version %d data %s, want %d %s", r.Version, r.Data, version, data)
		}
	}
	r, err := c.Put(ctx, name, map[string]any{"a": 1}, client.Cond{IfAbsent: true})
	check(r, err, 1, `{"a":1}`)
	r, err = c.PutPath(ctx, name, "position.x", 4, client.Cond{})
	check(r, err, 2, `{"a":1,"position":{"x":4}}`)
	r, err = c.MergePatch(ctx, name, map[string]any{"a": nil, "b": "x"}, client.IfMatch(2))
	check(r, err, 3, `{"position":{"x":4},"b":"x"}`)
	r, err = c.JSONPatch(ctx, name, []client.PatchOp{{Op: "test", Path: "/b", Value: "x"}, {Op: "replace", Path: "/b", Value: "y"}}, client.Cond{IfExists: true})
	check(r, err, 4, `{"position":{"x":4},"b":"y"}`)
	r, err = c.GetPath(ctx, name, "/position/x")
	check(r, err, 4, `4`)
	r, err = c.DeletePath(ctx, name, "position", client.Cond{})
	check(r, err, 5, `{"b":"y"}`)
	r, err = c.Get(ctx, name)
	check(r, err, 5, `{"b":"y"}`)

	// A failing test op: 409 PATCH_FAILED, and nothing changed.
	_, err = c.JSONPatch(ctx, name, []client.PatchOp{{Op: "test", Path: "/b", Value: "z"}}, client.Cond{})
	wantError(t, err, 409, api.CodePatchFailed)
	// A stale version: 412 with the current version.
	_, err = c.Put(ctx, name, 1, client.IfMatch(3))
	e := wantError(t, err, 412, api.CodeVersionConflict)
	if e.CurrentVersion != 5 || !client.IsConflict(err) || !api.IsCode(err, api.CodeVersionConflict) {
		t.Errorf("conflict %+v: want currentVersion 5, IsConflict and api.IsCode", e)
	}
	_, err = c.Put(ctx, name, 1, client.Cond{IfAbsent: true})
	wantError(t, err, 412, api.CodeVersionConflict)
	_, err = c.Put(ctx, "bad//name", 1, client.Cond{})
	wantError(t, err, 400, api.CodeInvalidName)
	r, err = c.Get(ctx, name)
	check(r, err, 5, `{"b":"y"}`)

	if err := c.Delete(ctx, name, client.IfMatch(5)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, name)
	wantError(t, err, 404, api.CodeNotFound)
	if !client.IsNotFound(err) {
		t.Errorf("IsNotFound(%v) = false", err)
	}
	wantError(t, c.Delete(ctx, name, client.Cond{}), 404, api.CodeNotFound)
}

func wantError(t *testing.T, err error, status int, code api.Code) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want a *client.Error", err, err)
	}
	if e.Status != status || e.Code != code || e.Detail == "" {
		t.Fatalf("error %+v, want %d %s with a detail", e, status, code)
	}
	return e
}

// TestListPages lists more records than a page holds, by List and by All.
func TestListPages(t *testing.T) {
	ctx := context.Background()
	c := client.NewClient(serverURL)
	prefix := "t-list/"
	var want []string
	for i := range 25 {
		name := fmt.Sprintf("%sr%02d", prefix, i)
		want = append(want, name)
		if _, err := c.Put(ctx, name, i, client.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after, pages := "", 0
	for {
		p, err := c.List(ctx, prefix, 10, after)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range p.Records {
			got = append(got, r.Name)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || pages < 3 {
		t.Errorf("List in %d pages: %v, want %v", pages, got, want)
	}
	got = nil
	for r, err := range c.All(ctx, prefix) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Name)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("All: %v, want %v", got, want)
	}
	if _, err := c.List(ctx, prefix, 5000, ""); err == nil {
		t.Error("List with limit 5000: no error")
	}
}

// TestBatch: a batch applies all its ops; a failing one changes nothing
// and names its index.
func TestBatch(t *testing.T) {
	ctx := context.Background()
	c := client.NewClient(serverURL)
	res, err := c.Batch(ctx,
		client.BatchPut("t-batch/a", map[string]int{"n": 1}, 0),
		client.BatchPutPath("t-batch/a", "m", 2, 1),
		client.BatchMergePatch("t-batch/a", map[string]any{"n": nil}),
		client.BatchPut("t-batch/b", map[string]int{"x": 1}, 0),
		client.BatchJSONPatch("t-batch/b", []client.PatchOp{{Op: "replace", Path: "/x", Value: "v"}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res) != "[{t-batch/a 1} {t-batch/a 2} {t-batch/a 3} {t-batch/b 1} {t-batch/b 2}]" {
		t.Errorf("results %v", res)
	}
	_, err = c.Batch(ctx, client.BatchDelete("t-batch/b", 0), client.BatchPut("t-batch/a", 0, 1))
	if e := wantError(t, err, 412, api.CodeVersionConflict); e.Index != 1 {
		t.Errorf("failing op index %d, want 1", e.Index)
	}
	if r, err := c.Get(ctx, "t-batch/b"); err != nil || string(r.Data) != `{"x":"v"}` {
		t.Errorf("after a failed batch: %v %v, want t-batch/b unchanged", r, err)
	}
}

// TestUpdateRaces: many clients increment one counter with Update; no
// increment is lost.
func TestUpdateRaces(t *testing.T) {
	ctx := context.Background()
	const clients, each = 8, 5
	name := "t-update/counter"
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for range clients {
		wg.Go(func() {
			c := client.NewClient(serverURL)
			for range each {
				_, err := c.Update(ctx, name, func(cur json.RawMessage) (json.RawMessage, error) {
					n := 0
					if cur != nil {
						if err := json.Unmarshal(cur, &n); err != nil {
							return nil, err
						}
					}
					return json.RawMessage(strconv.Itoa(n + 1)), nil
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r, err := client.NewClient(serverURL).Get(ctx, name)
	if err != nil || string(r.Data) != strconv.Itoa(clients*each) {
		t.Fatalf("counter %v %v, want %d", r, err, clients*each)
	}
	// f's error ends Update with it.
	boom := errors.New("boom")
	_, err = client.NewClient(serverURL).Update(ctx, name, func(json.RawMessage) (json.RawMessage, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Errorf("Update: %v, want boom", err)
	}
}

// TestEmit: an event gets a stream id; a bad name is a 400.
func TestEmit(t *testing.T) {
	c := client.NewClient(serverURL)
	id, err := c.Emit(context.Background(), "t-chat/lobby", map[string]string{"text": "hi"})
	if err != nil || id == "" {
		t.Fatalf("Emit: %q %v", id, err)
	}
	_, err = c.Emit(context.Background(), "/bad", 1)
	wantError(t, err, 400, api.CodeInvalidName)
}
