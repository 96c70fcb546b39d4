package auth

import "time"

// SetNow makes i read the time from now.
func SetNow(i *Issuer, now func() time.Time) { i.now = now }
