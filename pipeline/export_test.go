package pipeline

// Test helpers of this package's internal tests that the external ones (package pipeline_test)
// share.
var (
	WriteGeneratedEvents = writeGeneratedEvents
	PeerCube             = peerCube
	NewCluster           = newCluster
	WriteModel           = writeModel
)
