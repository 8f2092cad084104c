package batch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// s3Store is the little S3 client the Batch executor and the in-container
// task runner need: PUT, GET, HEAD of single objects and presigned GET URLs,
// signed with the SDK's SigV4 signer. (The module has no S3 SDK dependency;
// objects are at most 5 GB, the limit of one PUT.)
//
// Endpoint: AWS_ENDPOINT_URL_S3, else the SDK's base endpoint
// (AWS_ENDPOINT_URL), both path-style; else https://BUCKET.s3.REGION.amazonaws.com.
type s3Store struct {
	cfg      aws.Config
	endpoint string // empty: AWS
	signer   *v4.Signer
	http     *http.Client
}

var errNotFound = errors.New("no such S3 object")

func newS3(cfg aws.Config) *s3Store {
	ep := os.Getenv("AWS_ENDPOINT_URL_S3")
	if ep == "" && cfg.BaseEndpoint != nil {
		ep = *cfg.BaseEndpoint
	}
	return &s3Store{cfg: cfg, endpoint: strings.TrimRight(ep, "/"), signer: v4.NewSigner(), http: &http.Client{Timeout: 30 * time.Minute}}
}

// parseS3URL splits s3://bucket/prefix into bucket and prefix (no slashes
// at either end of the prefix).
func parseS3URL(s string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// URL", s)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%q has no bucket", s)
	}
	return bucket, strings.Trim(prefix, "/"), nil
}

func (s *s3Store) objectURL(bucket, key string) string {
	esc := (&url.URL{Path: "/" + key}).EscapedPath()
	if s.endpoint != "" {
		return s.endpoint + "/" + bucket + esc
	}
	region := s.cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	return fmt.Sprintf("https://%s.s3.%s.amazonaws.com%s", bucket, region, esc)
}

func (s *s3Store) region() string {
	if s.cfg.Region == "" {
		return "us-east-1"
	}
	return s.cfg.Region
}

func (s *s3Store) do(ctx context.Context, method, bucket, key string, body io.ReadSeeker, size int64, payloadHash string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.objectURL(bucket, key), nil)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Body = io.NopCloser(body)
		req.ContentLength = size
		req.GetBody = func() (io.ReadCloser, error) {
			if _, err := body.Seek(0, io.SeekStart); err != nil {
				return nil, err
			}
			return io.NopCloser(body), nil
		}
	}
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	creds, err := s.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS credentials: %w", err)
	}
	if err := s.signer.SignHTTP(ctx, creds, req, payloadHash, "s3", s.region(), time.Now()); err != nil {
		return nil, fmt.Errorf("sign S3 request: %w", err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("S3 %s s3://%s/%s: %w", method, bucket, key, err)
	}
	return resp, nil
}

func emptyHash() string {
	sum := sha256.Sum256(nil)
	return hex.EncodeToString(sum[:])
}

func httpErr(resp *http.Response, method, bucket, key string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("s3://%s/%s: %w", bucket, key, errNotFound)
	}
	return fmt.Errorf("S3 %s s3://%s/%s: %s: %s", method, bucket, key, resp.Status, strings.TrimSpace(string(b)))
}

// Exists reports whether the object exists (HEAD).
func (s *s3Store) Exists(ctx context.Context, bucket, key string) (bool, error) {
	resp, err := s.do(ctx, http.MethodHead, bucket, key, nil, 0, emptyHash())
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return true, nil
	case resp.StatusCode == http.StatusNotFound:
		return false, nil
	}
	return false, httpErr(resp, "HEAD", bucket, key)
}

// PutBytes uploads b.
func (s *s3Store) PutBytes(ctx context.Context, bucket, key string, b []byte) error {
	sum := sha256.Sum256(b)
	resp, err := s.do(ctx, http.MethodPut, bucket, key, bytes.NewReader(b), int64(len(b)), hex.EncodeToString(sum[:]))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return httpErr(resp, "PUT", bucket, key)
	}
	return nil
}

// PutFile uploads a file; sha is its sha256 (hex) if known, else computed.
func (s *s3Store) PutFile(ctx context.Context, bucket, key, path, sha string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if sha == "" {
		if sha, err = fileSHA(path); err != nil {
			return err
		}
	}
	resp, err := s.do(ctx, http.MethodPut, bucket, key, f, st.Size(), sha)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return httpErr(resp, "PUT", bucket, key)
	}
	return nil
}

// GetBytes downloads an object into memory (errNotFound if absent).
func (s *s3Store) GetBytes(ctx context.Context, bucket, key string) ([]byte, error) {
	resp, err := s.do(ctx, http.MethodGet, bucket, key, nil, 0, emptyHash())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, httpErr(resp, "GET", bucket, key)
	}
	return io.ReadAll(resp.Body)
}

// GetFile downloads an object into path (via a temp file and rename).
func (s *s3Store) GetFile(ctx context.Context, bucket, key, path string) error {
	resp, err := s.do(ctx, http.MethodGet, bucket, key, nil, 0, emptyHash())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return httpErr(resp, "GET", bucket, key)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dl-*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, resp.Body); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("download s3://%s/%s: %w", bucket, key, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// PresignGet returns a URL anyone can GET the object with until it expires.
func (s *s3Store) PresignGet(ctx context.Context, bucket, key string, expires time.Duration) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.objectURL(bucket, key), nil)
	if err != nil {
		return "", err
	}
	q := req.URL.Query()
	q.Set("X-Amz-Expires", fmt.Sprint(int(expires.Seconds())))
	req.URL.RawQuery = q.Encode()
	creds, err := s.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return "", fmt.Errorf("AWS credentials: %w", err)
	}
	u, _, err := s.signer.PresignHTTP(ctx, creds, req, "UNSIGNED-PAYLOAD", "s3", s.region(), time.Now())
	if err != nil {
		return "", fmt.Errorf("presign s3://%s/%s: %w", bucket, key, err)
	}
	return u, nil
}

func fileSHA(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
