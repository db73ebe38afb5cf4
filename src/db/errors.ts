/**
 * Errors raised by the database layer. Each carries a stable `code` (for logs and tests) and the HTTP status
 * an API route should answer with, so the HTTP error handler can map them without knowing this module.
 */
export class DatabaseLayerError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly statusCode = 500,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The embedded PostgreSQL could not start, or its worker died. */
export class EmbeddedDatabaseError extends DatabaseLayerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'EMBEDDED_DATABASE_FAILED', 500, options);
  }
}

/** Another process (or another `openDatabase` in this one) already serves the embedded data folder. */
export class DataFolderInUseError extends DatabaseLayerError {
  constructor(message: string) {
    super(message, 'DATA_FOLDER_IN_USE', 500);
  }
}

/** A secret could not be decrypted, or the key material is unusable. Never includes the secret itself. */
export class SecretBoxError extends DatabaseLayerError {
  constructor(message: string, code = 'SECRET_BOX', options?: { cause?: unknown }) {
    super(message, code, 500, options);
  }
}

export class EndpointNameTakenError extends DatabaseLayerError {
  constructor(name: string) {
    super(`an endpoint named ${JSON.stringify(name)} already exists`, 'ENDPOINT_NAME_TAKEN', 409);
  }
}

export class EndpointNotFoundError extends DatabaseLayerError {
  constructor(id: number) {
    super(`endpoint ${id} does not exist`, 'ENDPOINT_NOT_FOUND', 404);
  }
}

/** A paging cursor that this layer did not produce (or that was altered). */
export class InvalidCursorError extends DatabaseLayerError {
  constructor() {
    super('invalid paging cursor', 'INVALID_CURSOR', 400);
  }
}
