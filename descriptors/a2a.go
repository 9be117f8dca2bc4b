package descriptors

import (
	"fmt"
	"strings"
)

// AgentCard is an A2A (Agent2Agent protocol) Agent Card: the JSON document
// agent tools read to learn what an agent can do and how to reach it. A
// model descriptor maps onto it: skills become A2A skills, the owner peer
// and /daitn/infer/1.0.0 the endpoint.
type AgentCard struct {
	ProtocolVersion    string            `json:"protocolVersion"`
	Name               string            `json:"name"`
	Description        string            `json:"description"`
	URL                string            `json:"url"`
	PreferredTransport string            `json:"preferredTransport"`
	Version            string            `json:"version"`
	Provider           *AgentProvider    `json:"provider,omitempty"`
	Capabilities       AgentCapabilities `json:"capabilities"`
	DefaultInputModes  []string          `json:"defaultInputModes"`
	DefaultOutputModes []string          `json:"defaultOutputModes"`
	Skills             []AgentSkill      `json:"skills"`
	// Daitn carries what A2A has no field for, so nothing the descriptor
	// says is lost (A2A clients ignore unknown members).
	Daitn map[string]any `json:"x-daitn,omitempty"`
}

// AgentProvider names who runs the agent.
type AgentProvider struct {
	Organization string `json:"organization"`
	URL          string `json:"url,omitempty"`
}

// AgentCapabilities are the optional A2A features.
type AgentCapabilities struct {
	Streaming         bool `json:"streaming"`
	PushNotifications bool `json:"pushNotifications"`
}

// AgentSkill is one thing the agent does.
type AgentSkill struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
	InputModes  []string `json:"inputModes,omitempty"`
	OutputModes []string `json:"outputModes,omitempty"`
}

// InferProtocol is the stream protocol a model host answers queries on.
const InferProtocol = "/daitn/infer/1.0.0"

// AgentCardOf renders a model descriptor as an A2A Agent Card. Other kinds
// are not agents and are refused with an error naming the kind.
func AgentCardOf(s *Signed) (*AgentCard, error) {
	if s == nil || s.Kind != KindModel || s.Model == nil {
		k := Kind("")
		if s != nil {
			k = s.Kind
		}
		return nil, fmt.Errorf("agent card: %w", &FieldError{Field: "kind", Value: string(k), Want: "model (only models are agents)", Err: ErrKindMismatch})
	}
	m := s.Model
	in := modesOf(m.Modality, m.Inputs)
	out := []string{"application/json"}
	desc := m.Description
	if desc == "" {
		desc = fmt.Sprintf("%s model %s (%s) served over daitn", m.Architecture, s.Name, m.Version)
		if m.Task != "" {
			desc += " for " + m.Task
		}
	}
	card := &AgentCard{
		ProtocolVersion:    "0.3.0",
		Name:               s.Name,
		Description:        desc,
		URL:                "libp2p://" + s.Owner + InferProtocol,
		PreferredTransport: "libp2p",
		Version:            m.Version,
		Provider:           &AgentProvider{Organization: s.Owner},
		DefaultInputModes:  in,
		DefaultOutputModes: out,
		Daitn: map[string]any{
			"descriptor": s.ID.String(),
			"slot":       s.Slot.String(),
			"seq":        s.Seq,
			"expires":    s.Expires,
		},
	}
	for _, sk := range m.Skills {
		tags := []string{sk}
		if m.Task != "" {
			tags = append(tags, m.Task)
		}
		card.Skills = append(card.Skills, AgentSkill{
			ID: sk, Name: strings.ReplaceAll(sk, "-", " "),
			Description: fmt.Sprintf("%s with %s", sk, m.Architecture),
			Tags:        tags, InputModes: in, OutputModes: out,
		})
	}
	add := func(k string, v any, ok bool) {
		if ok {
			card.Daitn[k] = v
		}
	}
	add("architecture", m.Architecture, m.Architecture != "")
	add("params", m.Params, m.Params > 0)
	add("claimed_accuracy", m.ClaimedAccuracy, m.ClaimedAccuracy > 0)
	add("evaluations", m.Evaluations, len(m.Evaluations) > 0)
	add("latency_ms", m.LatencyMs, m.LatencyMs > 0)
	add("price", m.Price, m.Price != nil)
	add("weights_root", m.WeightsRoot, m.WeightsRoot != "")
	return card, nil
}

func modesOf(modality string, inputs []Field) []string {
	switch strings.ToLower(modality) {
	case "image":
		return []string{"image/png", "application/json"}
	case "text":
		return []string{"text/plain"}
	case "audio":
		return []string{"audio/wav"}
	}
	_ = inputs
	return []string{"application/json"}
}
