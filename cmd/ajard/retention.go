package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// retention is the automatic archiving of the activity log: events older
// than keep move into files in dir (README, "Archiving the log").
type retention struct {
	keep time.Duration
	dir  string
}

// retentionEvery is how often ajard looks for events to archive.
const retentionEvery = time.Hour

func (r *retention) register(fs *flag.FlagSet) {
	fs.Func("log-retention", "archive activity events older than this (such as 400d; default: keep everything in the database) into --log-archive-dir", func(s string) error {
		d, err := parseDays(s)
		if err != nil {
			return err
		}
		r.keep = d
		return nil
	})
	fs.StringVar(&r.dir, "log-archive-dir", "", "folder for the archive files of --log-retention")
}

func (r *retention) check() error {
	switch {
	case r.keep == 0 && r.dir == "":
		return nil
	case r.keep == 0 || r.dir == "":
		return errors.New("--log-retention and --log-archive-dir go together")
	case r.keep < 24*time.Hour:
		return fmt.Errorf("--log-retention must be at least 1d, got %s", r.keep)
	}
	return nil
}

// parseDays reads a duration that may be in days ("400d") or anything
// time.ParseDuration reads.
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > 100*365 {
			return 0, fmt.Errorf("%q is not a number of days from 1 to 36500 (such as 400d)", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration such as 400d or 9600h", s)
	}
	return d, nil
}
