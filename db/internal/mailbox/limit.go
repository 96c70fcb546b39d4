package mailbox

import "github.com/switchboard-dev/switchboard/api"

// MaxPayload is the largest payload a Bus carries, in bytes: api.Bus
// promises payloads under 7,000 bytes (NOTIFY stops at 8000).
const MaxPayload = 6999

// CheckSize refuses a payload larger than MaxPayload, with
// CodePayloadTooLarge, so that every Bus refuses the same ones.
func CheckSize(topic string, p []byte) error {
	if len(p) > MaxPayload {
		return api.Errorf(api.CodePayloadTooLarge,
			"bus payload of %d bytes on %q: over the limit of %d", len(p), topic, MaxPayload)
	}
	return nil
}
