// Command netprobe makes one HTTP(S) GET from inside a pod and prints the answer's status,
// for the dev cluster's tests of what a pod reaches (the API server through the `kubernetes`
// Service and cluster DNS, other Services by name, host services). Standard library only,
// static, so it runs in a FROM-scratch image.
//
//	netprobe URL               GET URL
//	netprobe -sa URL           GET URL with the pod's service-account token, trusting only
//	                           the service account's CA (hostname checked)
//	netprobe -in-cluster PATH  as client-go's rest.InClusterConfig: GET
//	                           https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/PATH
//	                           with the token and CA
//
// Prints "status N" then up to 2000 bytes of the body; exits 0 when an HTTP answer came
// (whatever its status), 1 when none did (DNS, connection, TLS: the error is printed), 2 on
// bad usage.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	sa := flag.Bool("sa", false, "authenticate with the pod's service account, trust its CA")
	inCluster := flag.Bool("in-cluster", false, "the argument is a path on the in-cluster API server")
	timeout := flag.Duration("timeout", 10*time.Second, "timeout of the whole request")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: netprobe [-sa | -in-cluster] URL-or-PATH")
		os.Exit(2)
	}
	target := flag.Arg(0)
	if *inCluster {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			fmt.Fprintln(os.Stderr, "netprobe: KUBERNETES_SERVICE_HOST/PORT not set: not in a pod")
			os.Exit(1)
		}
		target = "https://" + net.JoinHostPort(host, port) + "/" + strings.TrimPrefix(target, "/")
		*sa = true
	}
	transport := &http.Transport{Proxy: nil}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "netprobe:", err)
		os.Exit(2)
	}
	if *sa {
		token, err := os.ReadFile(saDir + "/token")
		if err != nil {
			fmt.Fprintln(os.Stderr, "netprobe: no service-account token:", err)
			os.Exit(1)
		}
		caPEM, err := os.ReadFile(saDir + "/ca.crt")
		if err != nil {
			fmt.Fprintln(os.Stderr, "netprobe: no service-account CA:", err)
			os.Exit(1)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caPEM) {
			fmt.Fprintln(os.Stderr, "netprobe: the service-account CA holds no certificate")
			os.Exit(1)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	client := &http.Client{Transport: transport, Timeout: *timeout}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 2000))
	fmt.Printf("status %d\n%s\n", resp.StatusCode, body)
}
