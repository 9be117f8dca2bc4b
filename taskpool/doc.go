// Package taskpool implements daitn's task pools, the draft's reversed
// discovery: a client posts a signed task on the gossip topic
// daitn/tasks/<pool>/1, agents that fit send the poster a signed bid over
// the /daitn/taskpool/1.0.0 stream, and the poster's policy (approve, first
// or best) assigns it. An assignment is a signed, epoch-numbered lease the
// agent acknowledges and renews; a lease that runs out puts the task back in
// the pool, and only a result carrying the current epoch is applied, so a
// task finishes exactly once even when agents die or come back late. Both
// sides persist their state in the node's store: the poster keeps results
// until collected and a bounded reputation book of the agents that worked
// for it, the agent keeps finished results in an outbox until the poster
// has them. The node wires one Service per node; the training
// service uses the same machinery to hand rounds to data nodes as leased
// tasks restricted to eligible peers.
package taskpool
