/**
 * Entry point of the writer thread that `createLogDestination({ thread: true })` starts.
 * Internal: not part of any published subpath.
 */
import { workerData } from 'node:worker_threads';
import { type RingInit, runRingWriter } from './log-ring.js';

runRingWriter(workerData as RingInit);
