import { BroadcastChannel, receiveMessageOnPort } from 'node:worker_threads';
const a = new BroadcastChannel('x'); const b = new BroadcastChannel('x');
a.postMessage({hi:1}); console.log(receiveMessageOnPort(b));
