package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strconv"

	"github.com/switchboard-dev/switchboard/api/client"
)

// Writing a record, a path of it and a merge patch; each write answers the
// record's new version.
func ExampleClient_Put() {
	ctx := context.Background()
	c := client.NewClient(serverURL, client.WithToken("")) // a token in auth mode
	r, err := c.Put(ctx, "example/driver/14", map[string]any{"name": "Ada"}, client.Cond{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Version, string(r.Data))
	r, _ = c.PutPath(ctx, "example/driver/14", "position.x", 4, client.Cond{})
	fmt.Println(r.Version, string(r.Data))
	r, _ = c.MergePatch(ctx, "example/driver/14", map[string]any{"name": nil}, client.IfMatch(r.Version))
	fmt.Println(r.Version, string(r.Data))
	// Output:
	// 1 {"name":"Ada"}
	// 2 {"name":"Ada","position":{"x":4}}
	// 3 {"position":{"x":4}}
}

// A write held to a version fails with 412 VERSION_CONFLICT once someone
// else wrote first.
func ExampleIsConflict() {
	ctx := context.Background()
	c := client.NewClient(serverURL)
	r, _ := c.Put(ctx, "example/conflict", "first", client.Cond{})
	c.Put(ctx, "example/conflict", "someone else", client.Cond{})
	_, err := c.Put(ctx, "example/conflict", "mine", client.IfMatch(r.Version))
	var e *client.Error
	if client.IsConflict(err) && errors.As(err, &e) {
		fmt.Println(e.Status, e.Code, "current version", e.CurrentVersion)
	}
	// Output:
	// 412 VERSION_CONFLICT current version 2
}

// Update retries a read-modify-write until no other writer came between.
func ExampleClient_Update() {
	c := client.NewClient(serverURL)
	r, err := c.Update(context.Background(), "example/counter", func(cur json.RawMessage) (json.RawMessage, error) {
		n := 0
		if cur != nil { // nil: the record does not exist yet
			if err := json.Unmarshal(cur, &n); err != nil {
				return nil, err
			}
		}
		return json.RawMessage(strconv.Itoa(n + 1)), nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Version, string(r.Data))
	// Output:
	// 1 1
}

// A batch applies all its ops or none.
func ExampleClient_Batch() {
	c := client.NewClient(serverURL)
	res, err := c.Batch(context.Background(),
		client.BatchPut("example/order/1", map[string]string{"state": "paid"}, 0),
		client.BatchPutPath("example/driver/7", "order", "example/order/1", 0),
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res)
	// Output:
	// [{example/order/1 1} {example/driver/7 1}]
}

// Listing records page by page: All follows the cursors.
func ExampleClient_All() {
	ctx := context.Background()
	c := client.NewClient(serverURL)
	for _, n := range []string{"b", "a", "c"} {
		c.Put(ctx, "example/list/"+n, n, client.Cond{})
	}
	for r, err := range c.All(ctx, "example/list/") {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(r.Name, r.Version)
	}
	// Output:
	// example/list/a 1
	// example/list/b 1
	// example/list/c 1
}

// Emitting an event to its subscribers.
func ExampleClient_Emit() {
	c := client.NewClient(serverURL)
	id, err := c.Emit(context.Background(), "example/chat/lobby", map[string]string{"text": "hello"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(id != "")
	// Output:
	// true
}
