//go:build !unix

package client

import "errors"

var errNoLock = errors.New("profile locking needs a unix system")

func (p *Profile) lock(bool) (func(), error)      { return nil, errNoLock }
func (p *Profile) tryListenLock() (func(), error) { return nil, errNoLock }
func lockDownload(string) (func(), error)         { return nil, errNoLock }
