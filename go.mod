module lda

go 1.26.0

require (
	github.com/emersion/go-maildir v0.6.0
	github.com/emersion/go-message v0.18.0
	github.com/foxcpp/go-sieve v0.0.0-20260523221512-9ae51b269e52
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/sys v0.49.0
)

require (
	github.com/emersion/go-textwrapper v0.0.0-20200911093747-65d896831594 // indirect
	rsc.io/binaryregexp v0.2.0 // indirect
)
