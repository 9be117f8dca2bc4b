// Package train is daitn's federated training service: the model goes to the
// data, an MPVU verifies it, the client steers it. One Service per node plays
// the roles the node has: a data node trains the global model it is sent on
// datasets it published and returns the update by CID (its data never
// leaves); an MPVU evaluates models on its held-out test set and returns
// signed evaluation reports; a client admits a job against its view of the
// network, hands each round to chosen data nodes as leased task-pool tasks,
// validates and averages the updates (package learn), has the MPVU evaluate
// the result and checkpoints the job in its store so that it survives a
// restart. Discovery goes through package descriptors, bulk bytes through
// package transfer, rounds through package taskpool; the planning (T-FAM
// admission, MTRCE choice of data nodes) is pure functions over the
// candidates the client sees.
package train
