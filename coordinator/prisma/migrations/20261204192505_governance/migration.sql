-- CreateEnum
CREATE TYPE "api_role" AS ENUM ('admin', 'researcher', 'auditor');

-- AlterEnum
ALTER TYPE "study_status" ADD VALUE 'cancelled';

-- AlterTable
ALTER TABLE "round_evaluation" ADD COLUMN     "figures" JSONB,
ADD COLUMN     "refused_reason" TEXT;

-- AlterTable
ALTER TABLE "site" ADD COLUMN     "agent_version" TEXT,
ADD COLUMN     "backend" TEXT,
ADD COLUMN     "policy" JSONB;

-- AlterTable
ALTER TABLE "study" ADD COLUMN     "owner" TEXT,
ADD COLUMN     "owner_token_id" TEXT;

-- CreateTable
CREATE TABLE "site_refusal" (
    "id" TEXT NOT NULL,
    "study_id" TEXT NOT NULL,
    "round" INTEGER NOT NULL,
    "site_id" TEXT NOT NULL,
    "task" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "message" TEXT NOT NULL,
    "study_hash" TEXT NOT NULL,
    "reported_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "site_refusal_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_token" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "role" "api_role" NOT NULL,
    "secret_hash" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "created_by" TEXT NOT NULL,
    "expires_at" TIMESTAMP(3) NOT NULL,
    "revoked_at" TIMESTAMP(3),
    "revoked_by" TEXT,
    "last_used_at" TIMESTAMP(3),

    CONSTRAINT "api_token_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_record" (
    "seq" INTEGER NOT NULL,
    "at" TIMESTAMP(3) NOT NULL,
    "kind" TEXT NOT NULL,
    "actor" TEXT NOT NULL,
    "study_id" TEXT,
    "round" INTEGER,
    "site_id" TEXT,
    "details" TEXT NOT NULL,
    "prev_hash" TEXT NOT NULL,
    "hash" TEXT NOT NULL,

    CONSTRAINT "audit_record_pkey" PRIMARY KEY ("seq")
);

-- CreateTable
CREATE TABLE "audit_checkpoint" (
    "seq" INTEGER NOT NULL,
    "hash" TEXT NOT NULL,
    "at" TIMESTAMP(3) NOT NULL,
    "consortium" TEXT NOT NULL,
    "certificate_fingerprint" TEXT NOT NULL,
    "certificate_pem" TEXT NOT NULL,
    "signature" TEXT NOT NULL,

    CONSTRAINT "audit_checkpoint_pkey" PRIMARY KEY ("seq")
);

-- CreateTable
CREATE TABLE "setting" (
    "key" TEXT NOT NULL,
    "value" JSONB NOT NULL,
    "updated_at" TIMESTAMP(3) NOT NULL,
    "updated_by" TEXT NOT NULL,

    CONSTRAINT "setting_pkey" PRIMARY KEY ("key")
);

-- CreateIndex
CREATE INDEX "site_refusal_site_id_idx" ON "site_refusal"("site_id");

-- CreateIndex
CREATE UNIQUE INDEX "site_refusal_study_id_round_site_id_task_key" ON "site_refusal"("study_id", "round", "site_id", "task");

-- CreateIndex
CREATE UNIQUE INDEX "api_token_secret_hash_key" ON "api_token"("secret_hash");

-- CreateIndex
CREATE UNIQUE INDEX "audit_record_prev_hash_key" ON "audit_record"("prev_hash");

-- CreateIndex
CREATE UNIQUE INDEX "audit_record_hash_key" ON "audit_record"("hash");

-- CreateIndex
CREATE INDEX "audit_record_kind_idx" ON "audit_record"("kind");

-- CreateIndex
CREATE INDEX "audit_record_study_id_idx" ON "audit_record"("study_id");

-- CreateIndex
CREATE INDEX "audit_record_site_id_idx" ON "audit_record"("site_id");

-- CreateIndex
CREATE INDEX "audit_record_at_idx" ON "audit_record"("at");

-- AddForeignKey
ALTER TABLE "site_refusal" ADD CONSTRAINT "site_refusal_study_id_fkey" FOREIGN KEY ("study_id") REFERENCES "study"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "site_refusal" ADD CONSTRAINT "site_refusal_site_id_fkey" FOREIGN KEY ("site_id") REFERENCES "site"("id") ON DELETE NO ACTION ON UPDATE CASCADE;

-- The audit log is append-only, enforced by the database: whoever holds the application's connection (or a
-- stolen copy of its credentials) can add records but cannot change, remove or truncate them. Dropping these
-- triggers takes the table owner's rights; the hash chain and the signed checkpoints catch that case too.
CREATE FUNCTION "federa_audit_append_only"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER "audit_record_append_only" BEFORE UPDATE OR DELETE ON "audit_record"
  FOR EACH ROW EXECUTE FUNCTION "federa_audit_append_only"();
CREATE TRIGGER "audit_record_no_truncate" BEFORE TRUNCATE ON "audit_record"
  FOR EACH STATEMENT EXECUTE FUNCTION "federa_audit_append_only"();
CREATE TRIGGER "audit_checkpoint_append_only" BEFORE UPDATE OR DELETE ON "audit_checkpoint"
  FOR EACH ROW EXECUTE FUNCTION "federa_audit_append_only"();
CREATE TRIGGER "audit_checkpoint_no_truncate" BEFORE TRUNCATE ON "audit_checkpoint"
  FOR EACH STATEMENT EXECUTE FUNCTION "federa_audit_append_only"();
