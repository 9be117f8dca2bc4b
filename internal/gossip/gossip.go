// Package gossip holds the GossipSub settings every daitn topic shares: the
// peer-score parameters that make a Reject from a topic validator cost the
// sender, and a Join helper that registers the validator, joins the topic and
// attaches its score parameters in one step.
package gossip

import (
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Options returns the pubsub options every daitn node uses: strict signing
// and peer scoring. Topic parameters are added per topic by Join.
func Options() []pubsub.Option {
	return []pubsub.Option{
		pubsub.WithMessageSigning(true),
		pubsub.WithStrictSignatureVerification(true),
		pubsub.WithPeerScore(PeerScoreParams(), PeerScoreThresholds()),
		pubsub.WithFloodPublish(true),
	}
}

// PeerScoreParams are deliberately simple: invalid messages (validator Reject)
// are the main penalty; IP colocation is off because federations on one
// machine or one LAN are normal for us.
func PeerScoreParams() *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics:                      map[string]*pubsub.TopicScoreParams{},
		AppSpecificScore:            func(peer.ID) float64 { return 0 },
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    0,
		IPColocationFactorThreshold: 1,
		BehaviourPenaltyWeight:      -1,
		BehaviourPenaltyThreshold:   6,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 10 * time.Minute,
	}
}

// PeerScoreThresholds: a peer that sent a handful of invalid messages drops
// below GossipThreshold; a persistent offender is graylisted.
func PeerScoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:             -10,
		PublishThreshold:            -50,
		GraylistThreshold:           -80,
		AcceptPXThreshold:           5,
		OpportunisticGraftThreshold: 2,
	}
}

// TopicScoreParams penalises invalid deliveries quadratically (P4) and gives
// a small credit for first deliveries (P2). Mesh-delivery penalties (P3) are
// off: our topics are bursty and quiet peers are not misbehaving.
func TopicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                     1,
		TimeInMeshWeight:                0.01,
		TimeInMeshQuantum:               time.Second,
		TimeInMeshCap:                   100,
		FirstMessageDeliveriesWeight:    0.5,
		FirstMessageDeliveriesDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
		FirstMessageDeliveriesCap:       20,
		MeshMessageDeliveriesWeight:     0,
		MeshMessageDeliveriesDecay:      0.5,
		MeshMessageDeliveriesThreshold:  1,
		MeshMessageDeliveriesCap:        2,
		MeshMessageDeliveriesWindow:     10 * time.Millisecond,
		MeshMessageDeliveriesActivation: time.Hour,
		MeshFailurePenaltyWeight:        0,
		MeshFailurePenaltyDecay:         0.5,
		InvalidMessageDeliveriesWeight:  -10,
		InvalidMessageDeliveriesDecay:   pubsub.ScoreParameterDecay(time.Hour),
	}
}

// Join registers validator (a pubsub.ValidatorEx or nil) for name, joins the
// topic and sets its score parameters. If validator registration fails the
// topic is not joined.
func Join(ps *pubsub.PubSub, name string, validator pubsub.ValidatorEx, opts ...pubsub.ValidatorOpt) (*pubsub.Topic, error) {
	if validator != nil {
		if err := ps.RegisterTopicValidator(name, validator, opts...); err != nil {
			return nil, fmt.Errorf("register validator for topic %s: %w", name, err)
		}
	}
	t, err := ps.Join(name)
	if err != nil {
		if validator != nil {
			_ = ps.UnregisterTopicValidator(name)
		}
		return nil, fmt.Errorf("join topic %s: %w", name, err)
	}
	if err := t.SetScoreParams(TopicScoreParams()); err != nil {
		_ = t.Close()
		if validator != nil {
			_ = ps.UnregisterTopicValidator(name)
		}
		return nil, fmt.Errorf("set score params for topic %s: %w", name, err)
	}
	return t, nil
}
