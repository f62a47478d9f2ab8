package awsec2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"

	"github.com/ajarhq/ajar/internal/jit"
)

// Client holds one EC2 client per region, made from one aws.Config.
type Client struct {
	base   aws.Config
	optFns []func(*ec2.Options)
	log    *slog.Logger
	now    func() time.Time
	// Settle is the first wait before retrying a call that EC2 refuses
	// because a security group ajar just created is not visible yet
	// (InvalidGroup.NotFound, DependencyViolation); it doubles up to
	// settleTries attempts.
	Settle time.Duration

	mu      sync.Mutex
	regions map[string]*ec2.Client
}

const settleTries = 6

// NewClient returns a Client over cfg (its credentials, retryer,
// BaseEndpoint...); optFns adjust each regional client.
func NewClient(cfg aws.Config, logger *slog.Logger, now func() time.Time, optFns ...func(*ec2.Options)) *Client {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Client{base: cfg, optFns: optFns, log: logger, now: now, Settle: 500 * time.Millisecond, regions: map[string]*ec2.Client{}}
}

// NewDefaultClient returns a Client whose credentials come from the
// SDK's default chain (environment, shared config and SSO profiles, web
// identity, the instance's metadata service). Throttled calls
// (RequestLimitExceeded) are retried by the SDK with exponential backoff,
// up to 8 attempts and 20 s between them.
func NewDefaultClient(ctx context.Context, logger *slog.Logger) (*Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRetryer(func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 8
			o.MaxBackoff = 20 * time.Second
		})
	}))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return NewClient(cfg, logger, nil), nil
}

// ec2 returns the client of region.
func (c *Client) ec2(region string) *ec2.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.regions[region]
	if !ok {
		opts := append([]func(*ec2.Options){func(o *ec2.Options) { o.Region = region }}, c.optFns...)
		cl = ec2.NewFromConfig(c.base, opts...)
		c.regions[region] = cl
	}
	return cl
}

// settle runs call again while it fails with one of codes, waiting
// Settle, then twice as long, and so on: EC2 is eventually consistent,
// and a group just created or detached may not be usable yet.
func (c *Client) settle(ctx context.Context, call func() error, codes ...string) error {
	wait := c.Settle
	for try := 1; ; try++ {
		err := call()
		if err == nil || try == settleTries || !containsCode(codes, apiCode(err)) {
			return err
		}
		c.log.Debug("aws: not consistent yet, retrying", "code", apiCode(err), "wait", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func containsCode(codes []string, c string) bool {
	for _, x := range codes {
		if x == c {
			return true
		}
	}
	return false
}

// apiCode returns the EC2 error code of err ("InvalidGroup.NotFound"), or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// callError turns a failed call doing what ("describe the instances of
// eu-west-1") into a *jit.Error when EC2 refused it, did not find what it
// names, or a limit was reached, and wraps anything else.
func callError(err error, what string) error {
	code := apiCode(err)
	switch {
	case code == "UnauthorizedOperation" || code == "AuthFailure" || code == "OptInRequired":
		return &jit.Error{Code: jit.EForbidden, Message: "ajar lacks permission to " + what + " (" + code + ")"}
	case strings.HasSuffix(code, ".NotFound"):
		return &jit.Error{Code: jit.ENotFound, Message: "not found in AWS: " + what + " (" + code + ")"}
	case code == "RulesPerSecurityGroupLimitExceeded":
		return &jit.Error{Code: jit.EConflict, Message: ReasonRuleLimit}
	case strings.HasSuffix(code, "LimitExceeded") && code != "RequestLimitExceeded":
		return &jit.Error{Code: jit.EConflict, Message: "AWS limit reached: cannot " + what + " (" + code + ")"}
	case code != "":
		var ae smithy.APIError
		errors.As(err, &ae)
		return &jit.Error{Code: jit.EUnavailable, Message: "cannot " + what + ": AWS answered " + code + ": " + clip(ae.ErrorMessage())}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
