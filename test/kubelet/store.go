package kubelet

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"

	"k8s.io/client-go/util/certificate"
)

// memoryStore is a certificate.Store that keeps the pair in memory, so a
// simulated kubelet starts with no certificate, like a freshly booted node.
type memoryStore struct {
	mu   sync.Mutex
	cert *tls.Certificate
}

var _ certificate.Store = (*memoryStore)(nil)

func (s *memoryStore) Current() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert == nil {
		err := certificate.NoCertKeyError("no serving certificate yet")
		return nil, &err
	}
	return s.cert, nil
}

func (s *memoryStore) Update(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load issued pair: %w", err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse issued certificate: %w", err)
		}
	}
	s.mu.Lock()
	s.cert = &c
	s.mu.Unlock()
	return &c, nil
}
