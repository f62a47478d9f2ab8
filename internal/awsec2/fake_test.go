package awsec2

// The tests drive the real SDK client against ec2fake, the in-memory EC2
// that speaks the Query API.

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/ajarhq/ajar/internal/awsec2/ec2fake"
	"github.com/ajarhq/ajar/internal/jit"
)

const region = "eu-west-1"

// testConfig is an aws.Config whose clients talk to f with static
// credentials, retrying throttled calls quickly.
func testConfig(f *ec2fake.EC2) aws.Config {
	return aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(f.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 4
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			})
		},
	}
}

func newClient(t *testing.T, f *ec2fake.EC2) *Client {
	c := NewClient(testConfig(f), testLogger(t), func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) })
	c.Settle = time.Millisecond
	return c
}

func awsVM(name, instanceID string) jit.VM {
	return jit.VM{ID: "vm-" + name, Name: name, Group: "vpc-1", Backend: jit.BackendAWS,
		ExternalID: "arn:aws:ec2:" + region + ":" + ec2fake.Account + ":instance/" + instanceID}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func open(proto string, port int, cidr string) ec2fake.Rule {
	return ec2fake.Rule{Proto: proto, From: port, To: port, CIDR: cidr}
}
