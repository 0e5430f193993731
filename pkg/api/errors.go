package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Error is an error with the HTTP status it is answered with. The server
// answers every failure as {"message": ...} with a status; the client
// returns such answers as *Error, so errors.Is(err, ErrNotFound) holds on
// both sides of the socket.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Message is the sentence for people.
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Is matches any *Error of the same status, so that the sentinels below
// match errors made by Errorf, wrapped ones, and the client's decoded ones.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status
}

// Sentinels for the statuses the API uses. Implementations of Containers
// and Machine return them wrapped (fmt.Errorf("...: %w", api.ErrNotFound))
// or make their own with Errorf; any other error is a 500.
var (
	// ErrInvalid is a bad request: a malformed parameter or body (400).
	ErrInvalid = &Error{Status: http.StatusBadRequest, Message: "invalid request"}
	// ErrForbidden is a peer that may not use the socket (403).
	ErrForbidden = &Error{Status: http.StatusForbidden, Message: "forbidden"}
	// ErrNotFound is an unknown container or exec session (404).
	ErrNotFound = &Error{Status: http.StatusNotFound, Message: "not found"}
	// ErrConflict is a request that the container's state refuses, such
	// as exec into a stopped container (409).
	ErrConflict = &Error{Status: http.StatusConflict, Message: "conflict"}
	// ErrNotImplemented is a feature this server does not have, such as
	// power requests under "photon-init run" (501).
	ErrNotImplemented = &Error{Status: http.StatusNotImplemented, Message: "not implemented"}
	// ErrUnavailable is a server that cannot take the request now, such
	// as one with too many connections (503).
	ErrUnavailable = &Error{Status: http.StatusServiceUnavailable, Message: "unavailable"}
)

// Errorf returns an *Error with the given status and message.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// StatusOf returns the HTTP status an error is answered with: the status
// of the first *Error in its chain; 503 for a cancelled or timed-out
// context (the server is shutting down); else 500.
func StatusOf(err error) int {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Status
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
