/** The offline queue: writes waiting for the network, kept in IndexedDB so they survive a reload. */

/** Queued writes in one IndexedDB store (in memory where IndexedDB is missing). */
export class Outbox {
  constructor(name) {
    this.memory = [];
    this.nextSeq = 1;
    this.opened = new Promise((resolve) => {
      if (typeof indexedDB === "undefined") return resolve(null);
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore("ops", { keyPath: "seq", autoIncrement: true });
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => resolve(null);
    });
  }

  async run(mode, work) {
    const db = await this.opened;
    if (db === null) return work(null);
    return new Promise((resolve, reject) => {
      const tx = db.transaction("ops", mode);
      const result = work(tx.objectStore("ops"));
      tx.oncomplete = () => resolve(result.result ?? result);
      tx.onerror = () => reject(tx.error);
    });
  }

  /** Append an op. */
  async add(op) {
    if ((await this.opened) === null) {
      this.memory.push({ seq: this.nextSeq++, op });
      return;
    }
    await this.run("readwrite", (store) => store.add({ op }));
  }

  /** Return every queued entry, oldest first. */
  async all() {
    if ((await this.opened) === null) return [...this.memory];
    return this.run("readonly", (store) => store.getAll());
  }

  /** Drop entries by sequence number. */
  async remove(seqs) {
    if ((await this.opened) === null) {
      this.memory = this.memory.filter((entry) => !seqs.includes(entry.seq));
      return;
    }
    await this.run("readwrite", (store) => {
      for (const seq of seqs) store.delete(seq);
      return {};
    });
  }
}
