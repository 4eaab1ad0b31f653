package webui

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/postern/postern/queue"
)

// Queue is what the page needs of the relay's queue; *queue.Queue
// satisfies it.
type Queue interface {
	List(queue.ListFilter) []queue.Info
	Show(id string) (queue.Info, error)
	Open(id string) (io.ReadCloser, error)
	Release(id string) error
	Delete(id string) error
	Len() (total, held int)
	Oldest() time.Time
}

// Day is one day of the relay's totals, for the admin chart.
type Day struct {
	Date                                                      time.Time
	Received, Delivered, Rejected, Quarantined, Viruses, Spam int
}

// Config configures the page.
type Config struct {
	Queue        Queue
	Authenticate func(ctx context.Context, user, password string) error
	Owns         func(user, addr string) bool
	Admins       []string
	Days         func(ctx context.Context, from, to time.Time) ([]Day, error)
	Logger       *slog.Logger
	Clock        func() time.Time
}

// Server is the page. It is an http.Handler.
type Server struct{ cfg Config }

// New validates cfg.
func New(cfg Config) (*Server, error) {
	return nil, errors.New("webui: not built yet")
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
